"""The designer's round trip with the installed extension and the real engine (tiny models): running an
effect again replaces or varies a sketch, sketches land above their photo's layer, sketches can be
stopped from Inkscape, Engine Status tells what runs and what the presets cost, and every message
names something the user can do from where they are. Direct runs under Inkscape's Python, and
Inkscape 1.2 itself under Xvfb."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lxml import etree

from bridge import connection
from tests.test_inkscape_ext import (
    EXAMPLE,
    INKSCAPE_PYTHON,
    OBJECT,
    ROOT,
    SVG_NS,
    SYSTEM_EXTENSIONS,
    TAG,
    embedded_svg,
    inkscape_runs,
    install_for_tests,
    levels,
    path_points,
    run_script,
    sketch_layers,
    stop_engine,
)

FAST = ["--levels=6,3", "--quality=custom", "--seeds=1", "--iterations=10", "--window=false"]
# Runs until stopped: the tiny test models' loss settles within a few evaluations, so the paper's
# stop rule (--converge) is off and the job really runs its 100000 iterations.
LONG = ["--levels=6", "--quality=custom", "--seeds=1", "--iterations=100000", "--converge=false"]
LONG += ["--window=false", "--detach=true"]
LABEL = f"{{{SVG_NS['inkscape']}}}label"
pytestmark = [
    pytest.mark.slow,  # real Inkscape, its Python, and the engine process
    pytest.mark.skipif(shutil.which("inkscape") is None, reason="Inkscape is not installed"),
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """This module's installation and tiny-model engine (as test_inkscape_ext's `setup`)."""
    installed = install_for_tests(tmp_path_factory.mktemp("roundtrip"))
    yield installed
    stop_engine(installed["env"])


@pytest.fixture
def ink_1_2(setup):
    return {**setup, "inkex": SYSTEM_EXTENSIONS}


def sketches(svg_bytes: bytes) -> list:
    return etree.fromstring(svg_bytes).xpath("//svg:g[@data-sketch-photo]", namespaces=SVG_NS)


def strokes(layer) -> list[str]:
    return layer.xpath(".//svg:path/@d", namespaces=SVG_NS)


def test_running_again_replaces_the_sketch_or_adds_a_variation(ink_1_2, tmp_path):
    doc = embedded_svg(tmp_path / "doc.svg", [{"id": "img1"}])
    first = run_script(ink_1_2, "sketch_object.py", doc, "--id=img1", *FAST)
    assert first.returncode == 0, first.stderr.decode()
    (saved := tmp_path / "saved.svg").write_bytes(first.stdout)  # saved and reopened: the link is in the file
    [layer] = sketches(first.stdout)
    assert (layer.get("data-sketch-photo"), layer.get("data-sketch-kind"), layer.get("data-sketch-variation")) == (
        "img1",
        "sketch",
        "1",
    )

    again = run_script(ink_1_2, "sketch_object.py", saved, "--id=img1", *FAST)
    assert again.returncode == 0, again.stderr.decode()
    [replaced] = sketches(again.stdout)
    assert replaced.get(LABEL) == f"Sketch of img1{TAG}", "replaced, not a second identical layer"
    assert strokes(replaced) == strokes(layer)  # same settings, same seeds: the same sketch

    varied = run_script(ink_1_2, "sketch_object.py", saved, "--id=img1", "--rerun=variation", *FAST)
    assert varied.returncode == 0, varied.stderr.decode()
    one, two = sorted(sketches(varied.stdout), key=lambda g: g.get("data-sketch-variation"))
    assert two.get(LABEL) == f"Sketch of img1 (variation 2){TAG}" and two.get("data-sketch-variation") == "2"
    assert strokes(one) == strokes(layer) and strokes(two) != strokes(layer), "a variation has other seeds"
    (both := tmp_path / "both.svg").write_bytes(varied.stdout)
    latest = run_script(ink_1_2, "sketch_object.py", both, "--id=img1", "--levels=4", *FAST[1:])
    assert latest.returncode == 0, latest.stderr.decode()
    after = {g.get("data-sketch-variation"): g for g in sketches(latest.stdout)}
    assert sorted(after) == ["1", "2"] and strokes(after["1"]) == strokes(one), "the latest one is replaced"
    assert [name for name, _, _ in levels(after["2"])] == ["4 strokes"]


def nested_doc(path: Path) -> Path:
    """The photo (500 px in an 80 x 60 box at (5, 10), meet) in layer "Photos" (translate(10, 5)),
    inside layer "Outer" (scale(2)), next to a layer "Notes" above it."""
    data = base64.b64encode(EXAMPLE.read_bytes()).decode()
    path.write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        'xmlns:inkscape="http://www.inkscape.org/namespaces/inkscape" width="210mm" height="297mm" '
        'viewBox="0 0 105 148.5">'
        '<g inkscape:groupmode="layer" id="outer" inkscape:label="Outer" transform="scale(2)">'
        '<g inkscape:groupmode="layer" id="layer1" inkscape:label="Photos" transform="translate(10,5)">'
        f'<image id="img1" x="5" y="10" width="80" height="60" xlink:href="data:image/png;base64,{data}"/></g>'
        '<g inkscape:groupmode="layer" id="notes" inkscape:label="Notes"/></g></svg>'
    )
    return path


def test_the_sketch_goes_directly_above_the_photos_layer(ink_1_2, tmp_path):
    out = run_script(ink_1_2, "sketch_object.py", nested_doc(tmp_path / "doc.svg"), "--id=img1", *FAST)
    assert out.returncode == 0, out.stderr.decode()
    [layer] = sketches(out.stdout)
    assert [g.get("id") for g in layer.getparent()] == ["layer1", layer.get("id"), "notes"]
    # In Outer's coordinates (its scale(2) still applies) the photo spans x 25..85, y 15..75.
    pts = path_points(layer)
    assert pts[:, 0].min() >= 25 - 1 and pts[:, 0].max() <= 85 + 1
    assert pts[:, 1].min() >= 15 - 1 and pts[:, 1].max() <= 75 + 1


def test_a_labelled_linked_photo_names_its_layer_by_the_label(ink_1_2, tmp_path):
    shutil.copy(EXAMPLE, tmp_path / "photo.png")
    attrs = 'inkscape:label="Dancer"'
    doc = embedded_svg(tmp_path / "doc.svg", [{"id": "img1", "href": "photo.png", "attrs": attrs}])
    out = run_script(ink_1_2, "sketch_object.py", doc, "--id=img1", *FAST)
    assert out.returncode == 0, out.stderr.decode()
    assert sketches(out.stdout)[0].get(LABEL) == f"Sketch of Dancer{TAG}"


@pytest.mark.parametrize(
    "selection, extra, words",
    [
        (["--id=m"], '<path id="m" d="M 30 20 L 60 20 L 60 60 Z"/>', "The selection holds no photo"),
        (["--id=img1", "--id=t", "--mask=path"], '<text id="t" x="40" y="40">Hi</text>', "text cannot be a mask"),
        (
            ["--id=img1", "--id=r", "--mask=path"],
            '<rect id="r" x="300" y="300" width="5" height="5"/>',
            "the selected rectangle does not lie over 'img1'",
        ),
    ],
    ids=["only-a-path", "text-as-mask", "rectangle-elsewhere"],
)
def test_selection_problems_say_what_is_selected(ink_1_2, tmp_path, selection, extra, words):
    doc = embedded_svg(tmp_path / "doc.svg", [{"id": "img1"}], extra=extra)
    out = run_script(ink_1_2, "sketch_object.py", doc, *selection, *FAST)
    assert out.returncode != 0 and words in out.stderr.decode(), out.stderr.decode()


MESSAGES = r"""
import json, sys
import sketchabs
from sketchabs import engine_link, messages
config = engine_link.EngineConfig("/nonexistent/engine/bin/python",
                                  install_py="/nonexistent/Sketch Abstraction/install.py",
                                  installer_python="/usr/bin/python3", weights_folder=sys.argv[1])
fixes = messages.Fixes(config)
cases = json.loads(sys.argv[2])
print(json.dumps([fixes.for_error(*case, "Object Sketch") for case in cases]))
"""

# What the engine and the client say (their own words, hints for command-line users), by case.
ENGINE_SAYS = {
    "paused": ("not_answering", "the engine (pid 42) is running but has not answered for 15 s: it is stopped or hung",
               "if it was paused (Ctrl-Z, kill -STOP), resume it with `kill -CONT 42`; otherwise end it with "
               "`sketch-abstraction stop`"),
    "queue": ("queue_full", "the engine's queue is full (100 jobs)",
              "submit the rest when some have finished (`sketch-abstraction status`), or cancel some"),
    "version": ("version_mismatch", "the running engine speaks protocol 1.0, this client 2.2",
                "stop it and start it again with the same version. After an update, also re-run `python3 install.py` "
                "for Inkscape"),
    "weights": ("weights_missing",
                "CLIP weights not available: downloading RN101.pt failed (<urlopen error [Errno -3]>)",
                "needs OpenAI's RN101.pt (278 MB); offline, copy them or pass --weights-dir DIR"),
    "mask": ("bad_input", "automatic masking needs the optional 'mask' extra",
             "pip install 'sketch-abstraction[mask]' (downloads U2-Net once, 176 MB), "
             "or pass --mask FILE / --mask none"),
    "value": ("bad_input", "stroke counts must be between 1 and 1024, got [0]",
              "see `sketch-abstraction sketch --help` for valid values"),
    "width": ("bad_input", "stroke width (--width) 400 px is too wide for this photo: more than a tenth of it",
              "try --width 13 (the default look)"),
    "died": ("engine_died", "the engine (pid 42) stopped while job abc was running",
             "see its log in /run/user/1000/sketch-abstraction/engine.log, then submit again"),
    "locked": ("bad_input", "every stroke is locked: there is nothing to optimise",
               "unlock some strokes (in Inkscape: Object > Unlock All), or add new ones (--add N)"),
}  # fmt: skip


def test_every_engine_message_names_an_action_inside_inkscape(ink_1_2, tmp_path):
    weights = tmp_path / "weights"
    out = subprocess.run(
        [INKSCAPE_PYTHON, "-c", MESSAGES, str(weights), json.dumps(list(ENGINE_SAYS.values()))],
        cwd=ink_1_2["ext"],
        env={**ink_1_2["env"], "PYTHONPATH": f"{ink_1_2['ext']}:{ink_1_2['inkex']}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    texts = dict(zip(ENGINE_SAYS, json.loads(out.stdout)))
    for case, text in texts.items():
        assert text[0].isupper(), (case, text)
        assert not re.search(r"`sketch-abstraction|pip install|--weights-dir DIR|urlopen|re-run", text), (case, text)
    assert "Extensions > Sketch Abstraction > Tools > Stop Sketches" in texts["paused"]
    assert "Extensions > Sketch Abstraction > Tools > Engine Status" in texts["queue"]
    assert texts["value"].endswith("What to do: Change the value in the effect's dialog.")
    installer = "/usr/bin/python3 '/nonexistent/Sketch Abstraction/install.py'"
    assert f"Run in a terminal: {installer} --skip-engine" in texts["version"]
    expected = f"Copy RN101.pt and ViT-B-32.pt into {weights} (it exists now), then run Object Sketch again"
    assert expected in texts["weights"]
    assert weights.is_dir(), "the folder to copy the weights into exists"
    assert "OpenAI's published CLIP models (github.com/openai/CLIP" in texts["weights"], "where the files come from"
    assert f"{installer} --extras mask" in texts["mask"]
    assert "Run Object Sketch again: the engine restarts" in texts["died"]
    assert "Stroke width (the Style tab's stroke width) 400 px" in texts["width"] and "--width" not in texts["width"]
    assert (
        "add new ones ('Add strokes where the sketch misses edges of the photo' on the Refine tab)" in texts["locked"]
    )


def test_missing_weights_are_reported_with_the_folder_to_copy_them_into(ink_1_2, tmp_path):
    """The real models, offline and not cached: the engine cannot start, and the message says where the
    weight files go (the folder install.py recorded, created for the user) and how install.py does it."""
    ext = tmp_path / "ext"
    shutil.copytree(ink_1_2["ext"], ext)
    config = json.loads((ext / "engine.json").read_text())
    assert config["weights_folder"] and Path(config["install_py"]).name == "install.py"
    weights = tmp_path / "weights"
    (ext / "engine.json").write_text(json.dumps({**config, "models": "openai", "weights_folder": str(weights)}))
    doc = embedded_svg(tmp_path / "doc.svg", [{"id": "img1"}])
    env = {**ink_1_2["env"], "SKETCH_ABSTRACTION_RUNTIME_DIR": str(tmp_path / "run"), "HOME": str(tmp_path)}
    out = subprocess.run(
        [INKSCAPE_PYTHON, "sketch_object.py", "--id=img1", *FAST, str(doc)],
        cwd=ext,
        env={**env, "PYTHONPATH": ink_1_2["inkex"], "DOCUMENT_PATH": str(doc)},
        capture_output=True,
        timeout=300,
    )
    stderr = out.stderr.decode()
    assert out.returncode != 0 and b"Sketch of" not in out.stdout
    assert f"Copy RN101.pt and ViT-B-32.pt into {weights} (it exists now), then run Object Sketch again" in stderr
    assert f"{config['install_py']} --skip-engine --weights-dir" in stderr and weights.is_dir(), stderr


def test_automatic_mask_without_the_extra_names_the_install_command(ink_1_2, tmp_path):
    config = json.loads((ink_1_2["ext"] / "engine.json").read_text())
    found = subprocess.run([config["python"], "-c", "import onnxruntime"], capture_output=True).returncode == 0
    if found:  # U2-Net's runtime is a regular dependency now: only an old engine lacks it
        pytest.skip("the engine has the mask extra here")
    doc = embedded_svg(tmp_path / "doc.svg", [{"id": "img1"}])
    out = run_script(ink_1_2, "sketch_object.py", doc, "--id=img1", "--mask=auto", *FAST)
    stderr = out.stderr.decode()
    assert out.returncode != 0 and "background-removal add-on" in stderr
    assert f"{config['install_py']} --extras mask" in stderr and "'Keep it (sketch the whole photo)'" in stderr


def wait_for_status(ink, doc: Path, words: str, timeout_s: float = 120) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        out = run_script(ink, "sketch_status.py", doc)
        text = out.stderr.decode()
        if words in text or time.monotonic() > deadline:
            return text
        time.sleep(0.5)


def test_engine_status_lists_sketches_by_photo_and_stop_sketches_cancels_them(ink_1_2, tmp_path):
    doc = embedded_svg(tmp_path / "doc.svg", [{"id": "img1", "attrs": 'inkscape:label="Dancer"'}])
    submitted = run_script(ink_1_2, "sketch_object.py", doc, "--id=img1", *LONG)
    assert "Submitted 1 sketch to the engine" in submitted.stderr.decode()
    status = wait_for_status(ink_1_2, doc, "Dancer: running, optimise")
    assert re.search(r"Dancer: running, optimise \d+ / 100000; .*at most \d+ (s|min) left", status), status
    assert re.search(r"on this machine \(cpu\): Fast at most \d+ (s|min), Standard at most", status), status
    assert "test models: the strokes mean nothing" in status and "Stop Sketches" in status

    stopped = run_script(ink_1_2, "sketch_stop.py", doc, "--which=document")
    assert "Stopped 1 sketch in the engine. The document is unchanged." in stopped.stderr.decode()
    assert b"Sketch of" not in stopped.stdout
    assert "Dancer: cancelled" in wait_for_status(ink_1_2, doc, "Dancer: cancelled")
    nothing = run_script(ink_1_2, "sketch_insert.py", doc)
    assert nothing.returncode != 0 and "No sketches are waiting" in nothing.stderr.decode()


def test_engine_status_detects_a_broken_install(ink_1_2, tmp_path):
    ext = tmp_path / "ext"
    shutil.copytree(ink_1_2["ext"], ext)
    config = json.loads((ext / "engine.json").read_text())
    doc = embedded_svg(tmp_path / "doc.svg", [{"id": "img1"}])
    env = {
        **ink_1_2["env"],
        "SKETCH_ABSTRACTION_RUNTIME_DIR": str(tmp_path / "run"),
        "PYTHONPATH": ink_1_2["inkex"],
        "DOCUMENT_PATH": str(doc),
    }
    said = {}
    for case, python in (("gone", "/nonexistent/python"), ("no engine", INKSCAPE_PYTHON)):
        (ext / "engine.json").write_text(json.dumps({**config, "python": python}))
        out = subprocess.run(
            [INKSCAPE_PYTHON, "sketch_status.py", str(doc)], cwd=ext, env=env, capture_output=True, timeout=60
        )
        said[case] = out.stderr.decode()
        assert "starts with the next sketch" not in said[case]
        assert f"Run in a terminal: {config['installer_python']} {config['install_py']}" in said[case], said[case]
    assert "The engine's Python (/nonexistent/python) is missing" in said["gone"]
    assert f"The engine's Python ({INKSCAPE_PYTHON}) cannot run the engine" in said["no engine"]


def test_rerun_inside_real_inkscape_replaces_then_varies(setup, tmp_path):
    """Inkscape 1.2 itself runs Object Sketch twice on the same photo in one session (Replace: one
    layer), then on the saved result with New variation (two layers)."""
    doc = embedded_svg(tmp_path / "doc.svg", [{"id": "img1"}])
    results = []
    for rerun, runs in (("replace", 2), ("variation", 1)):
        prefs = {"levels": "6,3", "quality": "custom", "seeds": "1", "iterations": "10", "rerun": rerun}
        result = tmp_path / f"{rerun}.svg"
        actions = "select-by-id:img1;" + f"{OBJECT}.noprefs;" * runs + f"export-filename:{result};export-do"
        inkscape_runs(setup, OBJECT, prefs, actions, results[-1] if results else doc)
        results.append(result)
    _, once = sketch_layers(results[0].read_bytes())
    assert [t.get(LABEL) for t in once] == [f"Sketch of img1{TAG}"], "the second run replaced the first"
    _, both = sketch_layers(results[1].read_bytes())
    assert sorted(t.get(LABEL) for t in both) == [f"Sketch of img1 (variation 2){TAG}", f"Sketch of img1{TAG}"]


def test_one_undo_in_real_inkscape_brings_the_replaced_sketch_back(ink_1_2, tmp_path):
    """Inkscape 1.2 itself replaces a 6+3-stroke sketch with a 4-stroke one, then runs its own `undo`
    action once: the old sketch is back exactly, the new one gone."""
    doc = embedded_svg(tmp_path / "doc.svg", [{"id": "img1"}])
    first = run_script(ink_1_2, "sketch_object.py", doc, "--id=img1", *FAST)
    assert first.returncode == 0, first.stderr
    (tmp_path / "sketched.svg").write_bytes(first.stdout)
    prefs = {
        "levels": "4",
        "quality": "custom",
        "seeds": "1",
        "iterations": "10",
        "rerun": "replace",
        "window": "false",
    }
    replaced, undone = tmp_path / "replaced.svg", tmp_path / "undone.svg"
    actions = (
        f"select-by-id:img1;{OBJECT}.noprefs;export-filename:{replaced};export-do;"
        f"undo;export-filename:{undone};export-do"
    )
    inkscape_runs(ink_1_2, OBJECT, prefs, actions, tmp_path / "sketched.svg")
    [old] = sketches(first.stdout)
    [new] = sketches(replaced.read_bytes())
    assert [name for name, *_ in levels(new)] == ["4 strokes"], "the effect replaced the sketch"
    [back] = sketches(undone.read_bytes())
    assert [name for name, *_ in levels(back)] == ["6 strokes", "3 strokes"]
    assert strokes(back) == strokes(old) and back.get("id") == old.get("id"), "one undo: the old sketch, exactly"


def test_install_links_the_weights_where_the_engine_looks(tmp_path):
    given = tmp_path / "given"
    given.mkdir()
    for name in ("RN101.pt", "ViT-B-32.pt"):
        (given / name).write_bytes(name.encode())
    env = {**os.environ, "HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    command = [sys.executable, str(ROOT / "install.py"), "--skip-engine", "--profile", str(tmp_path / "profile")]
    out = subprocess.run([*command, "--weights-dir", str(given)], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    config = json.loads((tmp_path / "profile" / "extensions" / "sketch-abstraction" / "engine.json").read_text())
    engine_looks = subprocess.run(
        [sys.executable, "-c", "from engine.clip.models import cache_dir; print(cache_dir())"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout.strip()
    assert config["weights_folder"] == engine_looks and engine_looks.startswith(str(tmp_path / "cache"))
    assert config["weights_dir"] is None, "the engine finds them in its own folder"
    for name in ("RN101.pt", "ViT-B-32.pt"):
        assert (Path(engine_looks) / name).read_bytes() == name.encode()
    (given / "ViT-B-32.pt").unlink()
    refused = subprocess.run([*command, "--weights-dir", str(given)], env=env, capture_output=True, text=True)
    assert refused.returncode != 0 and f"{given} does not hold ViT-B-32.pt" in refused.stderr


def test_stop_sketches_can_stop_the_engine(ink_1_2, tmp_path):
    doc = embedded_svg(tmp_path / "doc.svg", [{"id": "img1"}])
    assert run_script(ink_1_2, "sketch_object.py", doc, "--id=img1", *FAST).returncode == 0  # the engine runs
    runtime = Path(ink_1_2["env"]["SKETCH_ABSTRACTION_RUNTIME_DIR"])
    info = json.loads((runtime / connection.CONNECTION_FILE).read_text())
    out = run_script(ink_1_2, "sketch_stop.py", doc, "--which=engine")
    assert "The engine stopped; the next sketch starts it again." in out.stderr.decode(), out.stderr.decode()
    deadline = time.monotonic() + 60
    while os.path.exists(f"/proc/{info['pid']}") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not os.path.exists(f"/proc/{info['pid']}")
