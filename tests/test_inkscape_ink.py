"""Ink and motion inside Inkscape 1.2: Object Sketch with Ink places PowerStroke paths that keep their
effect, widths and importance; Animate Sketch writes the animation next to the document."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from lxml import etree
from PIL import Image

from tests.test_inkscape_ext import (
    OBJECT,
    SYSTEM_EXTENSIONS,
    embedded_svg,
    inkscape_runs,
    install_for_tests,
    run_script,
    stop_engine,
)
from tests.test_inkscape_ext import pytestmark as inkscape_marks

pytestmark = inkscape_marks
NS = {
    "svg": "http://www.w3.org/2000/svg",
    "inkscape": "http://www.inkscape.org/namespaces/inkscape",
    "sketchabs": "https://sketch-abstraction.org/ns",
}
IMPORTANCE = f"{{{NS['sketchabs']}}}importance"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    installed = install_for_tests(tmp_path_factory.mktemp("ink"))
    yield {**installed, "inkex": SYSTEM_EXTENSIONS}
    stop_engine(installed["env"])


def test_ink_object_sketch_in_real_inkscape_then_animate_it(setup, tmp_path):
    prefs = {"levels": "5", "quality": "custom", "seeds": "1", "iterations": "3", "style": "ink", "window": "false"}
    doc = embedded_svg(tmp_path / "doc.svg", [{"id": "img1"}])
    result = tmp_path / "result.svg"
    inkscape_runs(setup, OBJECT, prefs, f"select-by-id:img1;{OBJECT}.noprefs;export-filename:{result};export-do", doc)
    root = etree.parse(str(result)).getroot()
    paths = [p for p in root.iter(f"{{{NS['svg']}}}path") if p.get(f"{{{NS['inkscape']}}}original-d")]
    assert len(paths) == 5
    for path in paths:
        effect_id = path.get(f"{{{NS['inkscape']}}}path-effect")[1:]
        effect = root.find(f".//inkscape:path-effect[@id='{effect_id}']", NS)
        assert effect is not None and effect.get("effect") == "powerstroke"
        widths = [float(knot.split(",")[1]) for knot in effect.get("offset_points").split("|")]
        assert len(widths) == 4 and min(widths) > 0
        assert path.get(IMPORTANCE) is not None and "stroke:none" in path.get("style")
    importance = sorted((float(p.get(IMPORTANCE)) for p in paths), reverse=True)

    # Animate Sketch on that document, a stroke selected: the files land next to it (no display here,
    # so the message comes through Inkscape's dialog text, on stderr).
    for fmt in ("svg", "gif"):
        out = run_script(
            setup,
            "sketch_animate.py",
            result,
            f"--id={paths[0].get('id')}",
            f"--format={fmt}",
            "--duration=1",
            env_extra={"DISPLAY": "", "WAYLAND_DISPLAY": ""},
        )
        said = out.stderr.decode()
        written = re.search(r"is in (\S+)", said)
        assert written, said
        animation = Path(written.group(1).rstrip("."))
        assert animation.parent == result.parent and animation.suffix == f".{fmt}"
        if fmt == "svg":
            drawn = etree.parse(str(animation)).getroot().findall(".//svg:path[@mask]", NS)
            assert [float(p.get(IMPORTANCE)) for p in drawn] == importance  # most important first
        else:
            assert Image.open(animation).n_frames >= 5 + 1


def test_animate_sketch_says_what_to_do_without_a_sketch(setup, tmp_path):
    doc = embedded_svg(tmp_path / "doc.svg", [{"id": "img1"}])
    out = run_script(setup, "sketch_animate.py", doc, "--id=img1", env_extra={"DISPLAY": ""})
    assert out.returncode != 0 and "Select a stroke of the sketch" in out.stderr.decode()
