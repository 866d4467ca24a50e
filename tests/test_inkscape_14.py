"""Inkscape 1.4 itself (Debian 13's, in a debootstrap chroot: tests/trixie_inkscape.py) runs the
installed extension against the tiny-model engine running outside: an embedded photo and a photo
linked by a relative path get their layers, the link stays as the designer wrote it (1.4.0 does
not rebase an effect's links back; without the fix it stopped on a "Broken links" dialog), and the
GTK progress window's Stop and "Insert it as it is now" work with 1.4's own inkex and Python 3.13.

Marked `inkscape14`; CI runs them (as root, with debootstrap and Debian's mirror). Where the chroot
cannot be built they skip with the reason. The root is built once into trixie_inkscape.DEFAULT_ROOT
and reused; SKETCHABS_TRIXIE_ROOT names another (python -m tests.trixie_inkscape ROOT builds one).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from lxml import etree

from tests import test_inkscape_ext as harness
from tests import trixie_inkscape as trixie
from tests.test_inkscape_designer_work import FAST, FAST_PREFS, XLINK, linked_doc, sketches
from tests.test_inkscape_ext import OBJECT, SVG_NS, embedded_svg, run_script

pytestmark = [*harness.pytestmark, pytest.mark.inkscape14]


@pytest.fixture(scope="module")
def root():
    """A Debian 13 root with Inkscape 1.4 (mounted only inside each command: trixie_inkscape.inside)."""
    reason = trixie.unavailable()
    if reason:
        pytest.skip(reason)
    # Not under pytest's own temporary folders: built once, it is kept for later runs.
    path = Path(os.environ.get("SKETCHABS_TRIXIE_ROOT") or trixie.DEFAULT_ROOT)
    try:
        trixie.build(path)
    except subprocess.CalledProcessError as err:
        pytest.skip(f"the Debian 13 chroot could not be built (no mirror?): {err.stderr.decode()[-300:]}")
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory, root):
    """The extension installed under /tmp (seen inside the chroot), its engine started outside."""
    installed = harness.install_for_tests(Path(tempfile.mkdtemp(prefix="ink14-", dir="/tmp")))
    doc = embedded_svg(installed["base"] / "warm.svg", [{"id": "img1"}])
    ink = {**installed, "inkex": harness.SYSTEM_EXTENSIONS}
    assert run_script(ink, "sketch_object.py", doc, "--id=img1", *FAST).returncode == 0  # the engine runs
    yield installed
    harness.stop_engine(installed["env"])
    shutil.rmtree(installed["base"], ignore_errors=True)


def inkscape_14(root: Path, setup, prefs: dict, actions: str, doc: Path) -> subprocess.CompletedProcess:
    """Inkscape 1.4 runs `actions` on `doc` with Object Sketch's `prefs`; checked to end cleanly."""
    profile = Path(tempfile.mkdtemp(prefix="profile-", dir=doc.parent))
    shutil.copytree(setup["base"] / "profile", profile, dirs_exist_ok=True)
    (profile / "preferences.xml").write_text(
        '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n<inkscape version="1.4">'
        '<group id="extensions" ' + " ".join(f'{OBJECT}.{k}="{v}"' for k, v in prefs.items()) + " /></inkscape>"
    )
    names = ("SKETCH_ABSTRACTION_RUNTIME_DIR", "SKETCH_ABSTRACTION_DATA_DIR", "HOME")
    env = {**{k: setup["env"][k] for k in names}, "INKSCAPE_PROFILE_DIR": str(profile)}
    out = trixie.inkscape(
        root, "--batch-process", f"--actions={actions}", str(doc), cwd=str(doc.parent), env=env, timeout=200
    )
    stderr = out.stderr.decode()
    assert out.returncode == 0 and "Traceback" not in stderr and "additional data" not in stderr, stderr
    return out


def test_inkscape_1_4_sketches_an_embedded_photo(root, setup):
    version = trixie.inside(root, "inkscape", "--version", capture_output=True, text=True)
    assert version.stdout.startswith("Inkscape 1.4"), version.stdout
    doc = embedded_svg(Path(tempfile.mkdtemp(dir=setup["base"])) / "doc.svg", [{"id": "img1"}])
    result = doc.parent / "result.svg"
    inkscape_14(root, setup, FAST_PREFS, f"select-by-id:img1;{OBJECT}.noprefs;export-filename:{result};export-do", doc)
    [layer] = sketches(result.read_bytes()).values()
    assert layer.xpath(".//svg:g[@inkscape:label='6 strokes']/svg:path", namespaces=SVG_NS)


def test_inkscape_1_4_keeps_a_relative_link_to_the_photo(root, setup):
    doc = linked_doc(Path(tempfile.mkdtemp(dir=setup["base"])) / "art")
    result = doc.parent / "result.svg"
    inkscape_14(root, setup, FAST_PREFS, f"select-by-id:img1;{OBJECT}.noprefs;export-filename:{result};export-do", doc)
    saved = etree.fromstring(result.read_bytes())
    assert saved.xpath("//svg:image", namespaces=SVG_NS)[0].get(XLINK) == "camel.png"
    assert list(sketches(result.read_bytes())) == [1]


def window_14(setup, driver: str, how: str, args: list[str]) -> tuple[subprocess.CompletedProcess, Path]:
    """The effect under the chroot's Python 3.13, inkex 1.4 and GTK, its window driven by `driver`
    (`how`: the choice it makes); returns the run and the file the driver records what it saw in."""
    folder = Path(tempfile.mkdtemp(dir=setup["base"]))
    doc, record = embedded_svg(folder / "doc.svg", [{"id": "img1"}]), folder / "window.json"
    ext = setup["ext"]
    env = {
        **{k: setup["env"][k] for k in ("SKETCH_ABSTRACTION_RUNTIME_DIR", "SKETCH_ABSTRACTION_DATA_DIR", "HOME")},
        "PYTHONPATH": f"{ext}:{ext.parent}:/usr/share/inkscape/extensions",
        "DOCUMENT_PATH": str(doc),
        "INKSCAPE_PROFILE_DIR": str(folder),
    }
    inside = ["env", "PATH=/usr/bin:/bin", *(f"{k}={v}" for k, v in env.items())]
    command = f'cd "$0" && exec timeout -k 5 150 xvfb-run -a -f {folder}/.Xauthority python3 -c "$@"'
    shell = ["sh", "-c", command, str(ext), driver, how, str(record), *args, str(doc)]
    out = trixie.inside(setup["root"], *inside, *shell, capture_output=True, timeout=250)
    assert record.exists(), f"the window never showed optimisation progress: {out.stderr.decode()}"
    return out, record


def test_inkscape_1_4s_python_drives_the_progress_window_and_stops_the_sketch(root, setup):
    """The effect under the chroot's Python 3.13, inkex 1.4 and GTK: the live window, then Stop."""
    args = ["--id=img1", "--levels=6", "--quality=custom", "--seeds=1", "--iterations=400", "--window=true"]
    out, record = window_14({**setup, "root": root}, harness.WINDOW_DRIVER, "stop", args)
    shown = json.loads(record.read_text())
    assert max(shown["preview"]) == 256 and shown["bar"].startswith("optimise"), shown
    assert out.returncode == 251 and out.stderr == b"" and b"Sketch of" not in out.stdout, out.stderr.decode()


def test_inkscape_1_4s_python_inserts_the_sketch_as_it_is_now_and_stops_it(root, setup):
    """The same window's "Insert it as it is now", then "Stop the sketch": every level goes in."""
    from tests.test_insert_now import ARGS, NOW_DRIVER

    out, record = window_14({**setup, "root": root}, NOW_DRIVER, "stop", ARGS)
    shown = json.loads(record.read_text())
    assert shown["after"] == ["Stop the sketch", "Keep it running in the background"], shown
    assert out.returncode == 0 and out.stderr == b"", out.stderr.decode()
    [layer] = sketches(out.stdout).values()
    assert [g.get(f"{{{SVG_NS['inkscape']}}}label") for g in layer.xpath("svg:g", namespaces=SVG_NS)] == [
        "6 strokes",
        "3 strokes",
    ]
