"""Ink: widths per control point optimised with the strokes frozen, written as Inkscape PowerStroke
paths that Inkscape 1.2 itself draws as we do (the outline in `d`), with the centre line kept."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import cairosvg
import numpy as np
import pytest
import torch
from lxml import etree
from PIL import Image

from bridge.errors import InputError
from bridge.params import SketchRequest
from bridge.svgpath import IMPORTANCE
from engine.cli import main
from engine.methods.ink import InkParams, optimise_ink, scale_of, taper_prior
from engine.strokes import Sketch, StrokeLayer
from engine.svg import read_path_stroke, sketch_to_svg
from tests.harness.inkscape import xvfb_run
from tests.harness.paths import ANIMAL
from tests.sketch_svg import svg_to_sketch

NS = {"svg": "http://www.w3.org/2000/svg", "inkscape": "http://www.inkscape.org/namespaces/inkscape"}
ORIGINAL_D = f"{{{NS['inkscape']}}}original-d"
PATH_EFFECT = f"{{{NS['inkscape']}}}path-effect"

pytestmark = pytest.mark.filterwarnings("ignore:.*meaningless:UserWarning")


def strokes(*rows) -> np.ndarray:
    return np.array(rows, dtype=float).reshape(len(rows), -1, 2)


# A horizontal stroke (thin ends, thick middle) and two curves, in a 200 x 120 document.
POINTS = strokes(
    [20, 30.5, 70, 30.5, 130, 30.5, 180, 30.5],
    [20, 100, 60, 40, 140, 120, 180, 70],
    [30, 60, 30, 110, 90, 110, 100, 60],
)
WIDTHS = np.array([[1.0, 9.0, 9.0, 1.0], [2.0, 6.0, 3.0, 1.5], [4.0, 4.0, 1.0, 1.0]])  # full widths, photo px


def ink_document() -> bytes:
    layer = StrokeLayer("3 strokes", POINTS, width=3.0, importance=(3.0, 2.0, 1.0), ink=WIDTHS)
    return sketch_to_svg(Sketch(200, 120, (layer,)))


def coverage(png: bytes) -> np.ndarray:
    """(H, W) ink coverage in [0, 1] of a PNG drawn black on white or on transparency."""
    rgba = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"), dtype=float) / 255
    return rgba[..., 3] * (1 - rgba[..., :3].mean(-1))


def cairo_coverage(svg: bytes) -> np.ndarray:
    return coverage(cairosvg.svg2png(bytestring=svg))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0.5, b > 0.5
    return (a & b).sum() / (a | b).sum()


def test_ink_paths_are_powerstroke_with_the_centre_line_kept():
    root = etree.fromstring(ink_document())
    paths = root.findall(".//svg:path", NS)
    assert len(paths) == 3
    for path, stroke, widths in zip(paths, POINTS, WIDTHS, strict=True):
        effect_id = path.get(PATH_EFFECT)[1:]
        effect = root.find(f".//inkscape:path-effect[@id='{effect_id}']", NS)
        assert effect.get("effect") == "powerstroke" and effect.get("interpolator_type") == "Linear"
        knots = [tuple(map(float, knot.split(","))) for knot in effect.get("offset_points").split("|")]
        assert np.allclose([t for t, _ in knots], [0, 1 / 3, 2 / 3, 1], atol=1e-6)
        assert np.allclose([w for _, w in knots], widths / 2, atol=1e-3)  # PowerStroke offsets: half-widths
        assert path.get(ORIGINAL_D).startswith(f"M {stroke[0, 0]:g} {stroke[0, 1]:g} C")
        assert "fill:#000000" in path.get("style") and "stroke:none" in path.get("style")
    # Reading the file back gives the centre lines, not the outlines.
    (layer,) = svg_to_sketch(ink_document()).layers
    assert np.allclose(layer.points, POINTS) and layer.importance == (3.0, 2.0, 1.0)


def test_outline_has_the_widths_the_knots_give():
    cover = cairo_coverage(ink_document())
    # The horizontal stroke: 1 px at x = 20, 9 px between x = 70 and 130, linear in between.
    thickness = cover[:50].sum(axis=0)
    assert thickness[100] == pytest.approx(9.0, abs=0.3)
    assert thickness[45] == pytest.approx(5.0, abs=0.4)
    assert thickness[22] == pytest.approx(1.0 + 8 * 2 / 50, abs=0.4)


def test_bad_ink_widths_are_refused_before_writing():
    layer = StrokeLayer("bad", POINTS, ink=np.ones((3, 1)))
    with pytest.raises(ValueError, match="ink must be"):
        sketch_to_svg(Sketch(200, 120, (layer,)))
    with pytest.raises(InputError, match="--style"):
        SketchRequest(image=b"", style="marker").validate()


def test_ink_stage_keeps_bounds_and_never_loses_to_the_pen(runtime, animal_target):
    g = torch.Generator().manual_seed(0)
    points = (40 + 140 * torch.rand(2, 5, 4, 2, generator=g)).float()  # (K=2, n=5, 4, 2) canvas px
    drawn = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    ink = InkParams(iterations=6, eval_every=2)
    result = optimise_ink(runtime, animal_target, points, 1.5, ink, drawn=drawn)
    hw = result.half_widths
    assert hw.shape == (2, 5, 4)
    assert (hw >= 1.5 * ink.min_scale - 1e-5).all() and (hw <= 1.5 * ink.max_scale + 1e-5).all()
    assert hw[0].std() > 0.01  # the widths moved
    # The pen's uniform widths are the first eval: ink's objective is never worse.
    prior = taper_prior(hw / 1.5, result.pen_loss, ink)
    pen_prior = taper_prior(torch.ones(2, 5, 4), result.pen_loss, ink)
    assert ((result.ink_loss + prior) <= (result.pen_loss + pen_prior) + 1e-6).all()
    assert torch.allclose(scale_of(torch.tensor([-1e3, 1e3]), ink), torch.tensor([ink.min_scale, ink.max_scale]))


@pytest.mark.slow
def test_cli_sketch_style_ink_writes_powerstroke_levels(tmp_path):
    out = tmp_path / "ink.svg"
    fast = ["--models", "tiny-random", "--device", "cpu", "--strokes", "4,2", "--seeds", "1", "--iterations", "6"]
    assert main(["sketch", str(ANIMAL), "-o", str(out), *fast, "--aug-bank", "4", "--style", "ink", "-q"]) == 0
    root = etree.parse(str(out)).getroot()
    layers = root.findall("svg:g", NS)
    assert [len(layer.findall("svg:path", NS)) for layer in layers] == [4, 2]
    for path in root.iter(f"{{{NS['svg']}}}path"):
        assert path.get(ORIGINAL_D) and path.get(PATH_EFFECT)
    offsets = [
        float(knot.split(",")[1])
        for effect in root.iterfind(".//inkscape:path-effect", NS)
        for knot in effect.get("offset_points").split("|")
    ]
    assert max(offsets) > 1.2 * min(offsets)  # the widths vary
    sketch = svg_to_sketch(out.read_bytes())
    assert [len(layer.points) for layer in sketch.layers] == [4, 2]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("inkscape") is None or shutil.which("xvfb-run") is None, reason="needs Inkscape")
def test_real_inkscape_draws_the_ink_and_recomputes_the_same_outline(tmp_path):
    """Inkscape 1.2 draws `d` as written; asked to recompute the effect (a null move runs it), its own
    PowerStroke outline from original-d and offset_points covers the same pixels as ours in cairosvg."""
    doc = tmp_path / "ink.svg"
    doc.write_bytes(ink_document())
    as_written, recomputed, recomputed_svg = tmp_path / "as.png", tmp_path / "re.png", tmp_path / "re.svg"
    inkscape(tmp_path, doc, f"export-filename:{as_written};export-background:white;export-do")
    inkscape(
        tmp_path,
        doc,
        "select-by-id:ink-1,ink-2,ink-3;transform-translate:0,0;"
        f"export-filename:{recomputed_svg};export-do;"
        f"export-filename:{recomputed};export-background:white;export-do",
    )
    ours = cairo_coverage(doc.read_bytes())
    drawn = coverage(as_written.read_bytes())
    theirs = coverage(recomputed.read_bytes())
    assert drawn.shape == ours.shape == (120, 200)
    assert drawn.sum() > 500  # the ink is there
    assert iou(drawn, ours) > 0.97
    assert iou(theirs, ours) > 0.9, iou(theirs, ours)
    # Inkscape's own outline has the widths: thin ends, 9 px in the middle of the horizontal stroke.
    thickness = theirs[:50].sum(axis=0)
    assert thickness[100] == pytest.approx(9.0, abs=0.5) and thickness[22] < 2.5
    # It recomputed d from the centre line, which it kept.
    root = etree.parse(str(recomputed_svg)).getroot()
    first = root.find(".//svg:path[@id='ink-1']", NS)
    assert first.get("d") != etree.fromstring(ink_document()).find(".//svg:path", NS).get("d")
    (layer,) = svg_to_sketch(recomputed_svg.read_bytes()).layers
    assert np.allclose(layer.points, POINTS, atol=1e-3)


def inkscape(folder: Path, doc: Path, actions: str) -> None:
    profile = folder / "profile"
    profile.mkdir(exist_ok=True)
    batch = ["inkscape", "--batch-process", f"--actions={actions}", str(doc)]
    out = subprocess.run(
        ["timeout", "-k", "5", "90", *xvfb_run(profile), *batch],
        env={**os.environ, "INKSCAPE_PROFILE_DIR": str(profile)},
        capture_output=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr.decode()


def test_ink_reaches_every_layer_of_a_nested_sketch_and_moves_no_point(runtime, animal_target):
    """Scenes and refined sketches are inked as they come: nested layers, any stroke count, and the
    control points written exactly as the method left them."""
    from engine.inking import ink_sketch
    from engine.preprocess import CanvasMap

    cmap = CanvasMap(448, 448)
    cell = StrokeLayer(
        "cell",
        sublayers=(
            StrokeLayer("Background", POINTS[:1] * 2, width=6.0),
            StrokeLayer("Object", POINTS[1:] * 2, width=6.0, importance=(2.0, 1.0)),
        ),
    )
    sketch = Sketch(448, 448, (StrokeLayer("column", sublayers=(cell,)), StrokeLayer("empty")))
    inked, notes = ink_sketch(runtime, sketch, animal_target, cmap, InkParams(iterations=2, eval_every=1))
    background, obj = inked.layers[0].sublayers[0].sublayers
    assert background.ink.shape == (1, 4) and obj.ink.shape == (2, 4)
    assert np.array_equal(obj.points, POINTS[1:] * 2) and obj.importance == (2.0, 1.0)
    assert inked.layers[1].ink is None  # no strokes, no ink
    assert ((obj.ink >= 6.0 * 0.3 - 1e-4) & (obj.ink <= 6.0 * 2.5 + 1e-4)).all()
    assert len(notes) == 1 and "with the pen's widths" in notes[0]
    root = etree.fromstring(sketch_to_svg(inked))
    assert len(root.findall(".//inkscape:path-effect", NS)) == 3


def _refine(tmp_path, sketch: Sketch, *extra: str) -> tuple[etree._Element, etree._Element]:
    """`refine` of `sketch` over the test photo with tiny models: (input root, output root)."""
    photo, given, out = tmp_path / "photo.png", tmp_path / "given.svg", tmp_path / "out.svg"
    photo.write_bytes(ANIMAL.read_bytes())
    given.write_bytes(sketch_to_svg(sketch))
    fast = ["--models", "tiny-random", "--device", "cpu", "--aug-bank", "4", "--iterations", "11", "-q"]
    assert main(["refine", str(photo), str(given), "-o", str(out), *fast, *extra]) == 0
    return etree.fromstring(given.read_bytes()), etree.fromstring(out.read_bytes())


def _ink_paths(root: etree._Element) -> list[etree._Element]:
    """The document's paths, each checked to be a PowerStroke path whose own effect is in the defs."""
    effects = {e.get("id"): e for e in root.iter(PATH_EFFECT)}
    paths = root.findall(".//svg:g/svg:path", NS)
    for path in paths:
        effect = effects[path.get(PATH_EFFECT)[1:]]
        assert effect.get("effect") == "powerstroke" and path.get(ORIGINAL_D).startswith("M ")
        knots = np.array([k.split(",") for k in effect.get("offset_points").split("|")], dtype=float)
        assert len(knots) >= 2 and (knots[:, 1] > 0).all() and np.isfinite(knots).all()
        assert path.get("d").endswith("Z") and "stroke:none" in path.get("style")
    assert len(effects) == len(paths)  # one effect per path, none left over
    return paths


def _widths(root: etree._Element, path: etree._Element) -> str:
    return root.find(f".//inkscape:path-effect[@id='{path.get(PATH_EFFECT)[1:]}']", NS).get("offset_points")


def test_refine_in_ink_writes_powerstroke_paths_in_place_and_adds_ink_strokes(tmp_path):
    """An ink sketch refined with --style ink (tiny models, whose near-zero loss leaves the centre lines
    where they were): the same paths (ids, importance), each a PowerStroke path of its own effect with
    re-optimised widths and its outline redrawn, an added stroke in ink too; cairosvg draws it as ink."""
    sketch = Sketch(248, 248, (StrokeLayer("3 strokes", POINTS, importance=(3.0, 2.0, 1.0), ink=WIDTHS),))
    given, out = _refine(tmp_path, sketch, "--style", "ink", "--add", "1")
    before, after = _ink_paths(given), _ink_paths(out)
    assert [p.get("id") for p in after[:3]] == [p.get("id") for p in before] and len(after) == 4
    assert all(p.get(IMPORTANCE) for p in after)
    assert all(_widths(given, b) != _widths(out, a) for b, a in zip(before, after[:3], strict=True))
    assert all(b.get("d") != a.get("d") for b, a in zip(before, after[:3], strict=True))
    assert after[3].get(ORIGINAL_D) not in {b.get(ORIGINAL_D) for b in before}
    assert all(read_path_stroke(p, out).ink.shape == (4,) for p in after)  # read back as the engine reads ink
    assert cairo_coverage(etree.tostring(out)).sum() > 50


def test_refine_in_ink_writes_back_through_the_layers_transform(tmp_path):
    """The same strokes in a layer with transform="scale(0.5)" (user units twice the photo's pixels):
    the written centre lines, widths and outlines are the untransformed layer's, doubled."""
    sketch = Sketch(248, 248, (StrokeLayer("3 strokes", POINTS, importance=(3.0, 2.0, 1.0), ink=WIDTHS),))
    (tmp_path / "plain").mkdir(), (tmp_path / "scaled").mkdir()
    _, plain = _refine(tmp_path / "plain", sketch, "--style", "ink")
    root = etree.fromstring(sketch_to_svg(sketch))
    root.find(".//svg:g", NS).set("transform", "scale(0.5)")
    for path in root.iter("{http://www.w3.org/2000/svg}path"):
        path.set(ORIGINAL_D, " ".join(v if v.isalpha() else f"{2 * float(v):g}" for v in path.get(ORIGINAL_D).split()))
    for effect in root.iter(PATH_EFFECT):
        knots = [k.split(",") for k in effect.get("offset_points").split("|")]
        effect.set("offset_points", " | ".join(f"{t.strip()},{2 * float(w):g}" for t, w in knots))
    given = tmp_path / "scaled" / "given.svg"
    given.write_bytes(etree.tostring(root))
    photo, out = tmp_path / "plain" / "photo.png", tmp_path / "scaled" / "out.svg"
    fast = ["--models", "tiny-random", "--device", "cpu", "--aug-bank", "4", "--iterations", "11", "-q"]
    assert main(["refine", str(photo), str(given), "-o", str(out), "--style", "ink", *fast]) == 0
    scaled = etree.fromstring(out.read_bytes())
    numbers = lambda text: np.array(re.findall(r"-?[\d.]+", text), dtype=float)  # noqa: E731
    for a, b in zip(_ink_paths(plain), _ink_paths(scaled), strict=True):
        assert np.abs(numbers(b.get(ORIGINAL_D)) - 2 * numbers(a.get(ORIGINAL_D))).max() < 0.01
        assert np.abs(numbers(b.get("d")) - 2 * numbers(a.get("d"))).max() < 0.01
        assert np.abs(numbers(_widths(scaled, b)) - numbers(_widths(plain, a)) * np.tile([1, 2], 4)).max() < 1e-3


def test_refine_turns_a_pen_layer_to_ink_and_an_ink_layer_to_pen_as_the_style_says(tmp_path):
    """Was a refusal while the write-back could only write pen paths (tests the new behaviour since
    refine writes PowerStroke paths): the style asked for decides what the refined paths are."""
    pen = Sketch(248, 248, (StrokeLayer("3 strokes", POINTS, width=4.0),))
    _, inked = _refine(tmp_path, pen, "--style", "ink")
    assert len(_ink_paths(inked)) == 3
    ink = Sketch(248, 248, (StrokeLayer("3 strokes", POINTS, ink=WIDTHS),))
    _, penned = _refine(tmp_path, ink, "--style", "pen")
    paths = penned.findall(".//svg:g/svg:path", NS)
    assert len(paths) == 3 and not list(penned.iter(PATH_EFFECT))
    for path in paths:
        assert path.get(ORIGINAL_D) is None and path.get(PATH_EFFECT) is None
        assert "fill:none" in path.get("style") and "stroke:#000000" in path.get("style")


@pytest.mark.slow
def test_a_scene_in_ink_has_powerstroke_cells_over_the_whole_photo(runtime):
    """run_scene with style ink: every cell's parts come out inked, on the strokes the scene placed."""
    from bridge.params import SceneParams, SceneRequest
    from engine.jobs import run_scene
    from tests.harness.paths import FIELD, FIELD_MASK

    params = SceneParams(layers=(2,), levels=1, strokes=6, seeds=(0,), iterations=1, hidden=32, aug_bank=4)
    result = run_scene(runtime, SceneRequest(FIELD, params, mask=FIELD_MASK, style="ink"))
    leaves = []

    def walk(layer):
        if len(layer.points):
            leaves.append(layer)
        for sub in layer.sublayers:
            walk(sub)

    for layer in result.sketch.layers:
        walk(layer)
    assert leaves and all(leaf.ink is not None and leaf.ink.shape == (len(leaf.points), 4) for leaf in leaves)
    assert any("ink: CLIP eval loss" in note for note in result.notes)
    root = etree.fromstring(sketch_to_svg(result.sketch))
    assert len(root.findall(".//inkscape:path-effect", NS)) == sum(len(leaf.points) for leaf in leaves)


def test_previews_draw_an_ink_layer_with_its_widths():
    """The --preview sheet and the live preview draw ink as the PowerStroke paths do: where the widths
    differ from the pen's, the picture differs (thick middle, thin ends); equal widths draw the pen."""
    from engine.preview import LivePreview, preview_png, render_layer

    size, scale = (200, 120), 1.0
    pen = StrokeLayer("pen", POINTS[:1], width=5.0)
    ink = StrokeLayer("ink", POINTS[:1], width=5.0, ink=WIDTHS[:1])  # 1, 9, 9, 1 px
    uniform = StrokeLayer("uniform", POINTS[:1], width=5.0, ink=np.full((1, 4), 5.0))
    pen_dark, ink_dark = 1 - render_layer(pen, size, scale), 1 - render_layer(ink, size, scale)
    assert np.abs(1 - render_layer(uniform, size, scale) - pen_dark).max() < 0.05
    column = lambda dark, x: dark[:, x].sum()  # noqa: E731  (coverage across the stroke: its width)
    assert column(ink_dark, 100) == pytest.approx(9.0, abs=0.6) and column(pen_dark, 100) == pytest.approx(5.0, abs=0.6)
    assert column(ink_dark, 30) < column(pen_dark, 30) - 1.5  # the thin start
    photo = Image.new("RGB", size, "white")
    assert LivePreview(photo, 200).png(ink) != LivePreview(photo, 200).png(pen)
    buffer = io.BytesIO()
    photo.save(buffer, format="PNG")
    sheets = [preview_png(buffer.getvalue(), Sketch(200, 120, (layer,))) for layer in (pen, ink)]
    assert sheets[0] != sheets[1]
