"""The Inkscape extension installed by install.py into a temporary profile and run for real: directly
under Inkscape's Python as Inkscape runs it (`run_script`), with a display (`under_xvfb`), and inside
Inkscape 1.2 itself, headless under Xvfb (`inkscape_runs`)."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from lxml import etree
from PIL import Image

from tests.harness.paths import ROOT

INKSCAPE_PYTHON = "/usr/bin/python3"
SYSTEM_EXTENSIONS = "/usr/share/inkscape/extensions"
# The inkex each direct script run imports: Inkscape 1.2's own, and 1.3 / 1.4 as Inkscape 1.3 / 1.4
# ship them (installed from PyPI into .venv/inkex/ by scripts/setup.sh with the test extra).
INKEX = {"1.2.0": SYSTEM_EXTENSIONS, **{v: str(ROOT / ".venv" / "inkex" / v) for v in ("1.3.1", "1.4.1")}}
EXAMPLE = ROOT / "examples" / "ballerina.png"
SVG_NS = {"svg": "http://www.w3.org/2000/svg", "inkscape": "http://www.inkscape.org/namespaces/inkscape"}
OBJECT = "org.sketch-abstraction.object-sketch"
SCENE = "org.sketch-abstraction.scene-sketch"
TAG = " [test models]"  # what the name of every layer made with the test models ends with

MARKS = [
    pytest.mark.slow,  # real Inkscape, its Python, and the engine process
    pytest.mark.skipif(
        shutil.which("inkscape") is None or not os.path.isdir(SYSTEM_EXTENSIONS),
        reason="Inkscape is not installed (.ci/run installs it)",
    ),
]


def install_for_tests(base: Path) -> dict:
    """The extension installed in a fresh profile under `base`, for tiny models; the env that reaches
    the engine it starts (stop it with `stop_engine`)."""
    env = {
        **os.environ,
        "SKETCH_ABSTRACTION_RUNTIME_DIR": str(base / "run"),
        "SKETCH_ABSTRACTION_DATA_DIR": str(base / "data"),
        "SKETCH_ABSTRACTION_OFFLINE": "1",
        "INKSCAPE_PROFILE_DIR": str(base / "profile"),
        "HOME": str(base / "home"),
    }
    (base / "home").mkdir()
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "install.py"),
            "--skip-engine",
            "--profile",
            str(base / "profile"),
            "--models",
            "tiny-random",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    ext = base / "profile" / "extensions" / "sketch-abstraction"
    assert json.loads((ext / "engine.json").read_text())["models"] == "tiny-random"
    return {"env": env, "ext": ext, "base": base}


def stop_engine(env: dict) -> None:
    subprocess.run([sys.executable, "-m", "engine", "stop"], env=env, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def setup(tmp_path_factory):
    """The extension installed in a fresh profile, for the whole session; the tiny-model engine it
    starts; the env to reach it. Tests leave it installed and the engine running (a test that breaks
    the install or ends the engine installs its own with `install_for_tests`)."""
    installed = install_for_tests(tmp_path_factory.mktemp("ink"))
    yield installed
    stop_engine(installed["env"])


@pytest.fixture(scope="module", params=list(INKEX), ids=[f"inkex-{v}" for v in INKEX])
def ink(request, setup):
    """`setup` plus the folder of one inkex version, checked to be the version the scripts import."""
    version, folder = request.param, INKEX[request.param]
    found = subprocess.run(
        [INKSCAPE_PYTHON, "-c", "import inkex; print(inkex.__version__)"],
        capture_output=True,
        text=True,
        env={**setup["env"], "PYTHONPATH": folder},
        timeout=60,
    )
    assert found.stdout.strip() == version, (
        f"inkex {version} is missing from {folder}; bash scripts/test.sh installs it. {found.stderr}"
    )
    return {**setup, "inkex": folder}


@pytest.fixture
def ink_1_2(setup):
    """`setup` with Inkscape 1.2's own inkex only: for tests whose subject does not depend on inkex."""
    return {**setup, "inkex": SYSTEM_EXTENSIONS}


def embedded_svg(
    path: Path,
    images: list[dict],
    root_attrs: str = 'width="210mm" height="297mm" viewBox="0 0 105 148.5"',
    layer_transform: str = "translate(10,5)",
    extra: str = "",
) -> Path:
    data = base64.b64encode(EXAMPLE.read_bytes()).decode()
    tags = "".join(
        f'<image id="{im["id"]}" x="{im.get("x", 5)}" y="{im.get("y", 10)}" width="{im.get("w", 80)}" '
        f'height="{im.get("h", 60)}" {im.get("attrs", "")} '
        f'xlink:href="{im.get("href", "data:image/png;base64," + data)}"/>'
        for im in images
    )
    path.write_text(
        f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'xmlns:inkscape="http://www.inkscape.org/namespaces/inkscape" '
        f'xmlns:sodipodi="http://sodipodi.sourceforge.net/DTD/sodipodi-0.dtd" {root_attrs}>'
        f'<g inkscape:groupmode="layer" id="layer1" inkscape:label="Photos" transform="{layer_transform}">{tags}</g>'
        f"{extra}</svg>"
    )
    return path


FAST = ["--levels=6,3", "--quality=custom", "--seeds=1", "--iterations=10", "--window=false"]


def run_script(
    ink,
    script: str,
    doc: Path,
    *args: str,
    env_extra: dict | None = None,
    timeout: int = 180,
    memory_limit: int | None = None,
):
    """Run an effect as Inkscape does: its Python, its PYTHONPATH, cwd = the script's folder;
    `memory_limit` (bytes) caps its address space."""
    env = {
        **ink["env"],
        "PYTHONPATH": f"{ink['ext'].parent}:{ink['inkex']}",
        "DOCUMENT_PATH": str(doc),
        **(env_extra or {}),
    }

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))

    return subprocess.run(
        [INKSCAPE_PYTHON, script, *args, str(doc)],
        cwd=ink["ext"],
        env=env,
        capture_output=True,
        timeout=timeout,
        preexec_fn=cap if memory_limit else None,
    )


def sketch_layers(svg_bytes: bytes):
    root = etree.fromstring(svg_bytes)
    tops = root.xpath(
        "/svg:svg/svg:g[@inkscape:groupmode='layer'][starts-with(@inkscape:label, 'Sketch of')]", namespaces=SVG_NS
    )
    return root, tops


def levels(top):
    return [
        (
            g.get(f"{{{SVG_NS['inkscape']}}}label"),
            len(g.xpath("svg:path", namespaces=SVG_NS)),
            "display:none" in (g.get("style") or ""),
        )
        for g in top.xpath("svg:g[@inkscape:groupmode='layer']", namespaces=SVG_NS)
    ]


def path_points(top) -> np.ndarray:
    """Every number pair of every stroke's path data (absolute coordinates, as the effect writes)."""
    pts = []
    for d in top.xpath(".//svg:path/@d", namespaces=SVG_NS):
        nums = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", d)]
        pts += list(zip(nums[::2], nums[1::2]))
    return np.array(pts)


def png_header(width: int, height: int) -> str:
    """A data URI: a valid 4 x 4 PNG whose header claims width x height."""
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return "data:image/png;base64," + base64.b64encode(bytes(data)).decode()


def xvfb_run(folder: Path) -> list[str]:
    """xvfb-run with its X authority file in `folder`. Left to itself it makes a temporary folder
    for that file and, when removing it at exit fails, says so on stderr: the stream these tests
    read for what the extension itself says."""
    return ["xvfb-run", "-a", "-f", str(folder / ".Xauthority")]


def window_env(ink, doc: Path, tmp_path: Path, dark: bool = True) -> dict:
    """The environment of a direct run with a display: Inkscape's theme preference in its profile."""
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    (profile / "preferences.xml").write_text(
        f'<?xml version="1.0"?><inkscape><group id="theme" preferDarkTheme="{int(dark)}"/></inkscape>'
    )
    return {
        **ink["env"],
        "PYTHONPATH": f"{ink['ext']}:{ink['ext'].parent}:{ink['inkex']}",
        "DOCUMENT_PATH": str(doc),
        "INKSCAPE_PROFILE_DIR": str(profile),
    }


def needs_gtk() -> None:
    if shutil.which("xvfb-run") is None:
        pytest.skip("xvfb-run is not installed (.ci/run installs it)")
    gtk = subprocess.run([INKSCAPE_PYTHON, "-c", "import gi; gi.require_version('Gtk', '3.0')"], capture_output=True)
    if gtk.returncode != 0:
        pytest.skip("PyGObject with GTK 3 is not installed (.ci/run installs python3-gi, gir1.2-gtk-3.0)")


def under_xvfb(script: str, *args: str, cwd: Path, env: dict, timeout: int = 150):
    """`script` in the extension's Python under Xvfb; `env` from window_env (its profile folder per test)."""
    xvfb = xvfb_run(Path(env["INKSCAPE_PROFILE_DIR"]))
    return subprocess.run(
        ["timeout", "-k", "5", str(timeout), *xvfb, INKSCAPE_PYTHON, "-c", script, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        timeout=timeout + 50,
    )


def inkscape_runs(setup, effect: str, prefs: dict, actions: str, doc: Path, timeout_s: int = 150):
    """Inkscape 1.2 itself, headless under Xvfb, runs `actions` on `doc`; `effect` (its .noprefs action)
    reads `prefs` from a fresh copy of the installed profile, so they stay in the calling test. The
    run is checked to end cleanly: exit 0, no traceback, no "additional data" (stderr) dialog."""
    if shutil.which("xvfb-run") is None:
        pytest.skip("xvfb-run is not installed (.ci/run installs it)")
    profile = Path(tempfile.mkdtemp(prefix="profile-", dir=doc.parent))
    shutil.copytree(setup["base"] / "profile", profile, dirs_exist_ok=True)
    (profile / "preferences.xml").write_text(
        '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n<inkscape version="1.2">'
        '<group id="extensions" ' + " ".join(f'{effect}.{k}="{v}"' for k, v in prefs.items()) + " /></inkscape>"
    )
    out = subprocess.run(
        [
            *("timeout", "-k", "5", str(timeout_s), *xvfb_run(profile), "inkscape", "--batch-process"),
            f"--actions={actions}",
            str(doc),
        ],
        env={**setup["env"], "INKSCAPE_PROFILE_DIR": str(profile)},
        capture_output=True,
        timeout=timeout_s + 50,
    )
    stderr = out.stderr.decode()
    assert out.returncode == 0 and "Traceback" not in stderr and "additional data" not in stderr, stderr
    return out
