"""Ink and motion inside Inkscape 1.2: Object Sketch with Ink places PowerStroke paths that keep their
effect, widths and importance; Animate Sketch writes the animation next to the document."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from lxml import etree
from PIL import Image

from tests.harness.inkscape import (
    MARKS,
    OBJECT,
    SYSTEM_EXTENSIONS,
    embedded_svg,
    inkscape_runs,
    run_script,
)

pytestmark = MARKS
NS = {
    "svg": "http://www.w3.org/2000/svg",
    "inkscape": "http://www.inkscape.org/namespaces/inkscape",
    "sketchabs": "https://sketch-abstraction.org/ns",
}
IMPORTANCE = f"{{{NS['sketchabs']}}}importance"


@pytest.fixture(scope="module")
def setup(setup):
    """The session's installed extension and engine (tests/harness), read with Inkscape 1.2's own inkex."""
    return {**setup, "inkex": SYSTEM_EXTENSIONS}


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


def test_refine_sketch_on_an_ink_layer_in_real_inkscape_keeps_powerstroke_paths_that_it_renders(setup, tmp_path):
    """Refine Sketch (Strokes: Ink) inside Inkscape 1.2 on a layer Object Sketch placed in ink: the same
    paths, each still a PowerStroke path of its own effect (new widths, outline redrawn) with its
    centre line written back in place; Inkscape draws the refined layer as ink."""
    doc = embedded_svg(tmp_path / "doc.svg", [{"id": "img1"}])
    args = ["--id=img1", "--levels=4", "--quality=custom", "--seeds=1", "--iterations=2", "--style=ink"]
    placed = run_script(setup, "sketch_object.py", doc, *args, "--window=false")
    assert placed.returncode == 0, placed.stderr.decode()
    doc.write_bytes(placed.stdout)
    before = {p.get("id"): p for p in _ink_paths(etree.fromstring(placed.stdout))}
    assert len(before) == 4
    prefs = {"iterations": "11", "change": "none", "style": "ink", "window": "false"}
    result, png = tmp_path / "refined.svg", tmp_path / "layer.png"
    refine = "org.sketch-abstraction.refine-sketch"
    layer_id = next(iter(before.values())).getparent().get("id")
    actions = (
        f"select-by-id:img1,{next(iter(before))};{refine}.noprefs;export-filename:{result};export-do;"
        f"export-id:{layer_id};export-id-only;export-filename:{png};export-type:png;export-do"
    )
    inkscape_runs(setup, refine, prefs, actions, doc, timeout_s=200)
    after = {p.get("id"): p for p in _ink_paths(etree.parse(str(result)).getroot())}
    assert after.keys() == before.keys(), "the effect refined the layer's paths in place"
    assert all(p.get(IMPORTANCE) for p in after.values())
    for stroke_id, path in before.items():  # tiny models barely move a stroke (loss ~1e-5): rewritten in place
        assert np.abs(_centre_line(after[stroke_id]) - _centre_line(path)).max() < 0.05
        assert after[stroke_id].get("d") != path.get("d"), "the outline is redrawn with the new widths"
    drawn = np.asarray(Image.open(png).convert("RGBA"), dtype=float)
    assert (drawn[..., 3] > 128).sum() > 100, "Inkscape renders the refined ink"


def _ink_paths(root) -> list:
    """The paths with a centre line (inkscape:original-d), each checked to draw with its own
    PowerStroke effect of positive widths."""
    paths = [p for p in root.iter(f"{{{NS['svg']}}}path") if p.get(f"{{{NS['inkscape']}}}original-d")]
    references = [p.get(f"{{{NS['inkscape']}}}path-effect") for p in paths]
    assert len(set(references)) == len(paths), "one effect per path"
    for reference in references:
        effect = root.find(f".//inkscape:path-effect[@id='{reference[1:]}']", NS)
        assert effect is not None and effect.get("effect") == "powerstroke"
        assert min(float(knot.split(",")[1]) for knot in effect.get("offset_points").split("|")) > 0
    return paths


def _centre_line(path) -> np.ndarray:
    """The numbers of a path's inkscape:original-d."""
    return np.array(re.findall(r"-?[\d.]+(?:e-?\d+)?", path.get(f"{{{NS['inkscape']}}}original-d")), dtype=float)
