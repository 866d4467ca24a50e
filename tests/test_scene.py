"""Scene handling around CLIPascene: the object / background split, the vector combination, and the
`sketch-abstraction scene` command end to end with tiny random CLIP models."""

from __future__ import annotations

import io
import math
import os
import re
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from lxml import etree
from PIL import Image, ImageDraw

from bridge.params import SceneParams, SceneRequest
from engine import jobs
from engine.cli import main
from engine.io.image import load_mask
from engine.jobs import PREVIEW_SHARE, run_scene, with_previews
from engine.methods.clipascene import BACKGROUND, OBJECT, CellResult, ColumnResult, SceneRun
from engine.preprocess import CanvasMap
from engine.preview import LivePreview
from engine.progress import Progress
from engine.scene.combine import (
    bezier_points,
    clip_strokes,
    inside_rectangle,
    matrix_sketch,
    off_mask,
    split_bezier,
    sub_curve,
)
from engine.scene.inpaint import filler
from engine.scene.split import ObjectFrame, hole_mask, keep_large_components, normalise_object, split_scene
from engine.svg import INKSCAPE_NS, SVG_NS
from tests.harness.paths import BALLERINA, BALLERINA_MASK, FIELD, FIELD_MASK
from tests.sketch_svg import svg_to_sketch

pytestmark = pytest.mark.filterwarnings("ignore:.*meaningless:UserWarning")

FAST = [
    "--models",
    "tiny-random",
    "--device",
    "cpu",
    "--strokes",
    "8",
    "--seeds",
    "1",
    "--iterations",
    "1",
    "--levels",
    "2",
    "--layers",
    "2",
    "--aug-bank",
    "4",
]


# --- splitting ------------------------------------------------------------------------------------


def grow(mask: np.ndarray, size: int) -> np.ndarray:
    """(H, W) bool grown by a size x size square: the tests' own \"near\" region."""
    return cv2.dilate(mask.astype(np.uint8), np.ones((size, size), np.uint8)).astype(bool)


TELEA = filler("telea")


def test_components_under_a_third_of_the_largest_are_ignored():
    mask = np.zeros((60, 60), bool)
    mask[5:25, 5:25] = True  # 400 px
    mask[40:50, 40:50] = True  # 100 px: dropped
    mask[40:52, 5:17] = True  # 144 px: kept
    kept = keep_large_components(mask)
    assert kept[10, 10] and kept[45, 10] and not kept[45, 45]


def small_object_scene():
    """A 200 x 100 photo, a red 20 x 10 object at (30..50, 40..50) on blue."""
    pixels = np.zeros((100, 200, 3), np.uint8)
    pixels[:] = (0, 0, 255)
    pixels[40:50, 30:50] = (255, 0, 0)
    mask = np.zeros((100, 200), bool)
    mask[40:50, 30:50] = True
    return Image.fromarray(pixels), mask


def test_a_small_lone_object_is_enlarged_and_maps_back_onto_itself():
    image, mask = small_object_scene()
    normalised, frame = normalise_object(image, mask)
    assert normalised.size == image.size
    red = np.all(np.asarray(normalised) == (255, 0, 0), axis=-1)
    rows, cols = np.nonzero(red)
    # Long side 20 -> 0.7 x short side (70): the crop grows 3.5x, centred.
    assert cols.max() - cols.min() + 1 == pytest.approx(70, abs=2)
    assert (cols.min() + cols.max()) / 2 == pytest.approx(100, abs=1.5)
    assert (rows.min() + rows.max()) / 2 == pytest.approx(50, abs=1.5)
    assert np.asarray(normalised)[0, 0].tolist() == [255, 255, 255], "the rest is white"
    # The enlarged object's corners map back to the scene object's corners.
    corners = np.array([[cols.min(), rows.min()], [cols.max() + 1, rows.max() + 1]], float)
    assert np.allclose(frame.to_scene(corners), [[30, 40], [50, 50]], atol=0.6)


def test_a_large_or_split_object_stays_where_it_is():
    image, mask = small_object_scene()
    big = np.zeros_like(mask)
    big[10:90, 20:180] = True
    _, frame = normalise_object(image, big)
    assert frame == ObjectFrame()
    two = mask.copy()
    two[40:50, 150:170] = True  # a second component of the same size
    normalised, frame = normalise_object(image, two)
    assert frame == ObjectFrame()
    assert (
        np.asarray(normalised)[45, 160].tolist() == [0, 0, 255] and np.asarray(normalised)[5, 5].tolist() == [255] * 3
    )


def test_telea_inpainting_fills_the_object_and_leaves_the_rest():
    image, mask = small_object_scene()
    region = hole_mask(mask)
    filled, note = TELEA(image, region)
    pixels = np.asarray(filled).astype(int)
    assert "Telea, as asked" in note
    assert np.array_equal(pixels[~region], np.asarray(image)[~region]), "outside the hole nothing changes"
    assert pixels[45, 40, 2] > 200 and pixels[45, 40, 0] < 60, "the red object is gone, blue fills in"


def test_no_mask_means_one_object_and_a_full_mask_means_no_background():
    image, mask = small_object_scene()
    alone = split_scene(image, None, TELEA)
    assert alone.background_image is None and alone.mask is None and alone.object_image is image
    full = split_scene(image, np.ones_like(mask), TELEA)
    assert full.background_image is None and "whole image" in full.notes[0]
    both = split_scene(image, mask, TELEA)
    assert both.background_image is not None and both.mask is mask


# --- combining ------------------------------------------------------------------------------------


def test_bezier_pieces_are_exact():
    control = np.array([[0.0, 0.0], [10.0, 30.0], [40.0, -20.0], [50.0, 10.0]])
    left, right = split_bezier(control, 0.3)
    t = np.linspace(0, 1, 11)
    assert np.allclose(bezier_points(left, t), bezier_points(control, 0.3 * t))
    assert np.allclose(bezier_points(right, t), bezier_points(control, 0.3 + 0.7 * t))
    piece = sub_curve(control, 0.2, 0.6)
    assert np.allclose(bezier_points(piece, t), bezier_points(control, 0.2 + 0.4 * t))


def test_background_strokes_are_clipped_at_the_object_mask():
    mask = np.zeros((100, 100), bool)
    mask[30:70, 30:70] = True
    strokes = np.array(
        [
            [[10, 50], [36, 50], [63, 50], [90, 50]],  # crosses the object: two pieces
            [[40, 40], [45, 45], [50, 50], [60, 60]],  # inside: dropped
            [[5, 5], [10, 5], [15, 5], [20, 5]],  # outside: unchanged
        ],
        float,
    )
    pieces, index = clip_strokes(strokes, off_mask(mask))
    assert index.tolist() == [0, 0, 2]
    assert np.array_equal(pieces[2], strokes[2])
    for piece in pieces:
        xy = bezier_points(piece, np.linspace(0, 1, 200))
        assert not mask[xy[:, 1].astype(int), xy[:, 0].astype(int)].any()
    # The cuts sit at the mask's edge (pixel 30 is the first masked column, 70 the first free one).
    assert pieces[0][0, 0] == 10 and pieces[0][-1, 0] == pytest.approx(30, abs=1e-6)
    assert pieces[1][0, 0] == pytest.approx(70, abs=1e-6) and pieces[1][-1, 0] == 90


def test_strokes_are_cut_at_the_rectangle_into_exact_pieces_of_themselves():
    inside = inside_rectangle(100, 60, margin=2)
    strokes = np.array(
        [
            [[-20, 30], [30, -30], [70, -30], [120, 30]],  # in at the left, out the top, back in, out the right
            [[10, 10], [30, 50], [60, 10], [90, 50]],  # inside: unchanged
            [[-50, -50], [-40, -20], [-10, -30], [-5, -5]],  # outside: dropped
            [[1.5, 30], [2.3, 30], [2.6, 30], [2.9, 30]],  # 0.9 px inside: too short a piece to keep
        ],
        float,
    )
    pieces, index = clip_strokes(strokes, inside)
    assert index.tolist() == [0, 0, 1]
    assert np.array_equal(pieces[2], strokes[1])
    ends = np.concatenate([pieces[:2, 0], pieces[:2, -1]])
    on_edge = np.isclose(ends[:, 0], 2) | np.isclose(ends[:, 0], 98) | np.isclose(ends[:, 1], 2)
    assert on_edge.all(), ends  # every cut lies on the inset rectangle's edge (to 1e-8 px or so)
    t = np.linspace(0, 1, 2001)
    original = bezier_points(strokes[0], t)
    for piece in pieces[:2]:
        xy = bezier_points(piece, t)
        assert inside_rectangle(100, 60, margin=2 - 1e-9)(xy).all()
        # Each piece is the original curve between two parameters: its points lie on it.
        gap = np.linalg.norm(xy[:, None] - original[None], axis=-1).min(axis=1)
        assert gap.max() < 0.1


def canvas_strokes(*strokes) -> torch.Tensor:
    return torch.tensor(strokes, dtype=torch.float32)


def cell(row: int, points: torch.Tensor, keep: list[bool]) -> CellResult:
    n = len(points)
    importance = torch.linspace(1, 0.5, n)  # the first stroke is the most important
    return CellResult(row, points, torch.tensor(keep), importance, 0, 0, {})


def test_the_matrix_nests_cells_in_columns_draws_the_object_on_top_and_keeps_ink_on_the_photo():
    """A 448 x 224 photo sits in the middle half of the 224 canvas (y 56..168 canvas px)."""
    cmap = CanvasMap(448, 224)
    mask = np.zeros((224, 448), bool)
    mask[100:200, 200:300] = True  # the object, in photo px
    inside_photo = canvas_strokes([[20, 100], [30, 100], [40, 100], [50, 100]])
    into_padding = canvas_strokes([[60, 120], [60, 150], [60, 180], [60, 210]])  # leaves the photo downwards
    padding_only = canvas_strokes([[20, 10], [40, 10], [60, 10], [80, 10]])  # wholly above the photo
    across_object = canvas_strokes([[80, 120], [110, 120], [140, 120], [170, 120]])  # crosses x 100..150 canvas
    background = torch.cat([inside_photo, into_padding, padding_only, across_object])
    obj = torch.cat([inside_photo, padding_only, across_object])
    run = SceneRun(
        [
            ColumnResult(OBJECT, 8, [cell(0, obj, [True] * 3), cell(1, obj, [False, True, True])]),
            ColumnResult(BACKGROUND, 8, [cell(0, background, [True] * 4), cell(1, background, [True] * 4)]),
        ],
        iterations=1,
        seconds=0.0,
    )
    width = 4.0
    sketch, cells = matrix_sketch(run, cmap, ObjectFrame(), mask, (0, 1), 1, width, "#000000")
    assert [layer.label for layer in sketch.layers] == ["Fidelity 8 (ViT layer 8)"]
    column = sketch.layers[0]
    # Row 0: object 2 of 3 strokes show (one is off the photo), background 3 of 4 (one cut in two
    # at the object counts once). Row 1 keeps object strokes 2 and 3, and only the third shows.
    assert [c.label for c in column.sublayers] == ["Simplicity 0/1 - 5 strokes", "Simplicity 1/1 - 4 strokes"]
    assert list(cells) == [(8, 0), (8, 1)] and cells[(8, 1)] is column.sublayers[1]
    assert column.visible and [c.visible for c in column.sublayers] == [True, False]
    for c in column.sublayers:
        assert [part.label for part in c.sublayers] == ["Background", "Object"], "the object on top"
    background_layer, object_layer = column.sublayers[0].sublayers
    assert (len(background_layer.points), len(object_layer.points)) == (4, 2)
    # Each piece records its stroke's keep probability (the stroke cut at the object: both pieces).
    assert background_layer.importance == pytest.approx((1.0, 5 / 6, 0.5, 0.5))
    assert object_layer.importance == pytest.approx((1.0, 0.5))
    t = np.linspace(0, 1, 500)
    for layer in (background_layer, object_layer):
        for stroke in layer.points:
            xy = bezier_points(stroke, t)
            assert inside_rectangle(448, 224, width / 2 - 1e-9)(xy).all(), "ink stays on the photo"
    for stroke in background_layer.points:
        assert off_mask(mask)(bezier_points(stroke, t)).all()
    # The stroke into the padding now ends at the photo's bottom edge less half the stroke width.
    assert background_layer.points[1][-1, 1] == pytest.approx(224 - width / 2, abs=1e-6)


# --- the command ----------------------------------------------------------------------------------


def scene(image, out, *extra) -> int:
    return main(["scene", str(image), "-o", str(out), *FAST, "-q", *map(str, extra)])


def columns(svg):
    return svg_to_sketch(svg.read_bytes()).layers


def cells(svg):
    return [cell for column in columns(svg) for cell in column.sublayers]


CELL = re.compile(r"Simplicity (\d+)/(\d+) - (\d+) strokes?")


def shown(element) -> bool:
    """Whether Inkscape draws `element`: neither it nor any layer around it is hidden."""
    return all("display:none" not in (e.get("style") or "") for e in [element, *element.iterancestors()])


def deep_in(mask: np.ndarray, xy: np.ndarray, depth: float = 0.25) -> np.ndarray:
    """(s,) bool: points (s, 2) on `mask` (H, W) with `depth` px of mask all around them. Clipping at
    the mask's pixel grid is exact to a fraction of a pixel: the cuts are found from samples half a
    pixel apart (and the SVG rounds to 1/1000 px), so a curve may graze a mask pixel's corner."""
    height, width = mask.shape
    inside = np.ones(len(xy), dtype=bool)
    for dx, dy in ((depth, 0), (-depth, 0), (0, depth), (0, -depth)):
        col, row = np.floor(xy[:, 0] + dx).astype(int), np.floor(xy[:, 1] + dy).astype(int)
        on_image = (col >= 0) & (col < width) & (row >= 0) & (row < height)
        inside &= on_image & mask[np.clip(row, 0, height - 1), np.clip(col, 0, width - 1)]
    return inside


def test_cells_are_grouped_by_fidelity_column_with_the_object_on_top(tmp_path):
    svg = tmp_path / "ballerina.svg"
    assert scene(BALLERINA, svg, "--mask", BALLERINA_MASK, "--layers", "2,11") == 0
    root = etree.fromstring(svg.read_bytes())
    assert root.get("viewBox") == "0 0 500 500"
    groups = list(root.iter(f"{{{SVG_NS}}}g"))
    assert all(g.get(f"{{{INKSCAPE_NS}}}groupmode") == "layer" for g in groups), "native Inkscape layers only"
    ids = [g.get("id") for g in groups]
    assert len(ids) == len(set(ids)) == 2 + 2 * 3 * 3
    assert [column.label for column in columns(svg)] == ["Fidelity 2 (ViT layer 2)", "Fidelity 11 (ViT layer 11)"]
    mask, _ = load_mask(BALLERINA_MASK, (500, 500))
    near_object = grow(mask, 61)
    for column in columns(svg):
        assert len(column.points) == 0 and column.visible
        labels = [CELL.fullmatch(c.label) for c in column.sublayers]
        assert [(int(m[1]), int(m[2])) for m in labels] == [(0, 2), (1, 2), (2, 2)], [c.label for c in column.sublayers]
        for match, cell in zip(labels, column.sublayers):
            assert [s.label for s in cell.sublayers] == ["Background", "Object"], "Object last: drawn on top"
            background, obj = cell.sublayers
            assert 0 < len(obj.points) <= 8 and len(background.points) > 0 and len(cell.points) == 0
            # The count names the strokes that show: every path is a whole stroke or a piece of one.
            assert 0 < int(match[3]) <= len(obj.points) + len(background.points)
            # No background ink inside the object mask (sampled along every stroke).
            for stroke in background.points:
                assert not deep_in(mask, bezier_points(stroke, np.linspace(0, 1, 400))).any()
            # Object strokes start on the object's edges, so mapped back to the photo they lie on it
            # (within MLP_loc's initial offset, up to ~10 canvas px = ~25 photo px).
            for x, y in obj.points[:, 0]:
                assert near_object[int(np.clip(y, 0, 499)), int(np.clip(x, 0, 499))], (x, y)
    # Exactly one cell is drawn (the first), and it is drawn whole.
    cell_groups = [g for g in groups if CELL.fullmatch(g.get(f"{{{INKSCAPE_NS}}}label"))]
    assert [shown(g) for g in cell_groups] == [True] + [False] * 5
    drawn = [p for p in root.iter(f"{{{SVG_NS}}}path") if shown(p)]
    assert drawn and all(p.getparent().getparent() is cell_groups[0] for p in drawn)
    assert sorted(os.listdir(tmp_path)) == ["ballerina.svg"], "no temp file left behind"


def with_every_layer_shown(data: bytes, pad: int) -> bytes:
    """The SVG with every layer displayed and `pad` px of canvas added around the photo."""
    root = etree.fromstring(data)
    for g in root.iter(f"{{{SVG_NS}}}g"):
        g.set("style", "display:inline")
    w, h = float(root.get("width")), float(root.get("height"))
    root.set("viewBox", f"{-pad} {-pad} {w + 2 * pad} {h + 2 * pad}")
    root.set("width", str(w + 2 * pad))
    root.set("height", str(h + 2 * pad))
    return etree.tostring(root)


@pytest.mark.parametrize("mask", [FIELD_MASK, "none"])
def test_no_stroke_of_any_cell_leaves_the_photo(tmp_path, mask):
    """The field photo is 320 x 240: on the square canvas it has padding above and below, where the
    optimisation may put strokes. Checked on the written SVG, point by point and as cairosvg draws it."""
    import cairosvg

    svg = tmp_path / "field.svg"
    assert scene(FIELD, svg, "--mask", mask, "--strokes", "32", "--width", "6") == 0
    t = np.linspace(0, 1, 400)
    for cell in cells(svg):
        for part in cell.sublayers:
            for stroke in part.points:
                xy = bezier_points(stroke, t)
                # The centre line stays half a width (3 px) inside, so round caps end at the edge;
                # the SVG rounds coordinates to 1/1000 px.
                assert xy.min() >= 3 - 1e-3 and xy[:, 0].max() <= 317 + 1e-3 and xy[:, 1].max() <= 237 + 1e-3
    pad = 40
    png = cairosvg.svg2png(bytestring=with_every_layer_shown(svg.read_bytes(), pad))
    alpha = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))[..., 3]
    assert alpha.shape == (240 + 2 * pad, 320 + 2 * pad)
    photo = np.zeros_like(alpha, dtype=bool)
    photo[pad : pad + 240, pad : pad + 320] = True
    assert alpha[photo].max() == 255, "the strokes are drawn"
    assert alpha[~photo].max() == 0, "no ink outside the photo"


def only_cell_shown(data: bytes, label_of_cell: str, label_of_column: str) -> bytes:
    """The SVG with one cell displayed and every other hidden."""
    root = etree.fromstring(data)
    for column in root.findall(f"{{{SVG_NS}}}g"):
        for cell in column.findall(f"{{{SVG_NS}}}g"):
            mine = (column.get(f"{{{INKSCAPE_NS}}}label"), cell.get(f"{{{INKSCAPE_NS}}}label"))
            cell.set("style", "display:inline" if mine == (label_of_column, label_of_cell) else "display:none")
    return etree.tostring(root)


def test_the_preview_is_a_contact_sheet_of_the_matrix(tmp_path):
    """Columns = fidelity layers, rows = simplicity levels; each panel shows its cell's strokes (as
    cairosvg draws them from the SVG) over the faded photo, under its column, row and stroke count."""
    import cairosvg

    from engine.preview import LINE, MARGIN, MATRIX_PANEL, PHOTO_OPACITY

    svg, png = tmp_path / "ballerina.svg", tmp_path / "ballerina.png"
    assert scene(BALLERINA, svg, "--mask", BALLERINA_MASK, "--layers", "2,11", "--preview", png) == 0
    assert sorted(os.listdir(tmp_path)) == ["ballerina.png", "ballerina.svg"], "no temp file left behind"
    side, strip = MATRIX_PANEL, MARGIN + 2 * LINE
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size == (2 * side, 3 * (side + strip))
        sheet = np.asarray(im.convert("RGB"), dtype=np.float64) / 255
    photo = np.asarray(Image.open(BALLERINA).convert("RGB").resize((side, side), Image.Resampling.BICUBIC)) / 255
    faded = 1 - PHOTO_OPACITY * (1 - photo)
    data = svg.read_bytes()
    grid = [[(column.label, cell.label) for cell in column.sublayers] for column in columns(svg)]
    panels, expected = {}, {}
    for c, column in enumerate(grid):
        for r, (column_label, cell_label) in enumerate(column):
            top = r * (side + strip)
            # The label strip reads "<column>" over "<row> - <n> strokes", as the SVG names them.
            text = Image.new("RGB", (side, strip), "white")
            draw = ImageDraw.Draw(text)
            for i, line in enumerate((column_label, cell_label)):
                draw.text((MARGIN, MARGIN // 2 + i * LINE), line, fill="black")
            assert np.array_equal(sheet[top : top + strip, c * side : (c + 1) * side], np.asarray(text) / 255)
            panels[(r, c)] = sheet[top + strip : top + strip + side, c * side : (c + 1) * side]
            drawn = cairosvg.svg2png(
                bytestring=only_cell_shown(data, cell_label, column_label), output_width=side, output_height=side
            )
            expected[(r, c)] = np.asarray(Image.open(io.BytesIO(drawn)).convert("RGBA"))[..., 3] > 64
    for key, panel in panels.items():
        ink = (faded - panel).mean(axis=-1) > 0.25
        near = grow(expected[key], 5)
        assert np.abs(panel - faded)[~near].max() < 0.02, "elsewhere: the faded photo"

        def overlap(a, b):
            return (a & b).sum() / (a | b).sum()

        scores = {other: overlap(ink, expected[other]) for other in expected}
        assert scores[key] > 0.5 and scores[key] == max(scores.values()), (key, scores)


@pytest.mark.parametrize(
    "case, words",
    [
        ("preview is the svg", "-o and --preview are the same file"),
        ("preview is the image", "--preview photo.png is the input image"),
        ("svg is the image", "-o photo.png is the input image"),
        ("preview folder is missing", "does not exist"),
    ],
)
def test_a_preview_or_svg_that_would_overwrite_a_file_is_refused_up_front(tmp_path, capsys, monkeypatch, case, words):
    monkeypatch.chdir(tmp_path)
    Image.open(FIELD).save("photo.png")
    before = Path("photo.png").read_bytes()
    svg, preview = {
        "preview is the svg": ("out.svg", "out.svg"),
        "preview is the image": ("out.svg", "./photo.png"),
        "svg is the image": ("photo.png", "p.png"),
        "preview folder is missing": ("out.svg", "missing/p.png"),
    }[case]
    assert scene("photo.png", svg, "--preview", preview) == 2
    err = capsys.readouterr().err
    assert words in err and "fix:" in err and "Traceback" not in err, err
    assert os.listdir(".") == ["photo.png"] and Path("photo.png").read_bytes() == before


LIVE = SceneParams(layers=(2, 11), levels=1, strokes=8, seeds=(0,), iterations=1, hidden=32, aug_bank=4)


def scene_job(runtime, monkeypatch, preview_every):
    """run_scene on the ballerina with her mask: (result, progress events, layers live previews drew)."""
    drawn = []
    real = LivePreview.png
    monkeypatch.setattr(jobs, "PREVIEW_SHARE", math.inf)  # every step, however slow drawing is here
    monkeypatch.setattr(LivePreview, "png", lambda self, layer: drawn.append(layer) or real(self, layer))
    events = []
    request = SceneRequest(BALLERINA, LIVE, mask=BALLERINA_MASK)
    return run_scene(runtime, request, events.append, preview_every), events, drawn


def sorted_strokes(points: np.ndarray) -> np.ndarray:
    return np.sort(points.reshape(len(points), -1), axis=0)


def test_a_scene_job_previews_the_row_being_optimised_where_the_svg_puts_it(runtime, monkeypatch):
    """Every preview shows the first fidelity column's current best sketch: the object (mapped back from
    its enlarged image) on the dancer, the background off her; at the end of a row, exactly the cell
    the SVG gets."""
    result, events, drawn = scene_job(runtime, monkeypatch, 0)
    steps = [e for e in events if e.stage == "optimise"]
    assert all(e.strokes is None for e in events), "the method's tensors never leave the job"
    assert len(drawn) == len(steps) and all(e.preview is not None for e in steps), "preview_every 0: every step"
    picture = np.asarray(Image.open(io.BytesIO(steps[-1].preview)).convert("L"), dtype=np.float64)
    assert picture.shape == (256, 256)
    assert (picture < 150).sum() > 50 and picture.mean() > 150, "strokes over the photo faded to >= 75 % white"
    mask, _ = load_mask(BALLERINA_MASK, (500, 500))
    near_object = grow(mask, 61)
    t = np.linspace(0, 1, 400)
    for layer in drawn:
        background, obj = layer.sublayers
        assert (background.label, obj.label) == (BACKGROUND, OBJECT), "the object on top"
        assert len(obj.points) > 0 and all(near_object[int(y), int(x)] for x, y in obj.points[:, 0].clip(0, 499))
        assert not any(deep_in(mask, bezier_points(stroke, t)).any() for stroke in background.points)
    fidelity_end = max(i for i, e in enumerate(steps) if e.detail.startswith("fidelity row"))
    for i, row in ((fidelity_end, 0), (-1, LIVE.levels)):
        for shown, written in zip(drawn[i].sublayers, result.matrix[(2, row)].sublayers):
            assert np.allclose(sorted_strokes(shown.points), sorted_strokes(written.points)), (row, shown.label)


def test_without_preview_every_nothing_is_drawn_and_no_tensor_leaves_the_job(monkeypatch):
    """Jobs always pass progress through `with_previews`: off, it draws nothing (not even the faded
    photo) and only drops the method's strokes."""
    monkeypatch.setattr(LivePreview, "__init__", lambda *_: pytest.fail("a preview was prepared"))
    seen = []
    report = with_previews(seen.append, None, Image.open(BALLERINA), lambda _: pytest.fail("a preview was drawn"))
    report(Progress("optimise", 1, 2, strokes={OBJECT: torch.zeros(8, 4, 2)}))
    report(Progress("init", 0, 1))
    assert [(p.stage, p.strokes, p.preview) for p in seen] == [("optimise", None, None), ("init", None, None)]


def test_drawing_previews_takes_at_most_a_tenth_of_the_job(monkeypatch):
    """A slow machine draws previews less often than asked: the job waits while one is drawn."""
    draw_s = 0.05
    monkeypatch.setattr(LivePreview, "png", lambda self, layer: time.sleep(draw_s) or b"png")
    seen = []
    report = with_previews(seen.append, 0.0, Image.open(BALLERINA), lambda strokes: strokes)
    start = time.monotonic()
    while time.monotonic() - start < 1.0:  # iterations of 10 ms
        time.sleep(0.01)
        report(Progress("optimise", 1, 2, strokes=torch.zeros(1, 4, 2)))
    drawn = sum(p.preview is not None for p in seen)
    assert 1 <= drawn <= 1 + 1.0 / (draw_s / PREVIEW_SHARE), (drawn, len(seen))


def test_the_paper_grid_writes_rows_1_3_5_7(tmp_path):
    svg = tmp_path / "grid.svg"
    assert scene(FIELD, svg, "--levels", "7", "--paper-grid") == 0
    assert [column.label for column in columns(svg)] == ["Fidelity 2 (ViT layer 2)"]
    assert [CELL.fullmatch(cell.label)[1] for cell in cells(svg)] == ["1", "3", "5", "7"]


def test_without_a_mask_the_whole_image_is_one_object(tmp_path, capsys):
    svg = tmp_path / "field.svg"
    assert main(["scene", str(FIELD), "-o", str(svg), *FAST, "--mask", "none"]) == 0
    for layer in cells(svg):
        background, obj = layer.sublayers
        assert len(obj.points) > 0 and len(background.points) == 0
    err = capsys.readouterr().err
    assert "no mask" in err and "wrote" in err


def test_a_mask_of_another_size_is_resized_and_said_so(tmp_path, capsys):
    small = tmp_path / "mask.png"
    Image.open(FIELD_MASK).resize((160, 120), Image.Resampling.NEAREST).save(small)
    svg = tmp_path / "field.svg"
    assert main(["scene", str(FIELD), "-o", str(svg), *FAST, "--mask", str(small)]) == 0
    assert "resized to 320x240" in capsys.readouterr().err
    assert all(len(layer.sublayers[0].points) > 0 for layer in cells(svg))


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--layers", "12"], "layers"),
        (["--layers", "2,2"], "repeat"),
        (["--levels", "-2"], "levels"),
        (["--levels", "3", "--paper-grid"], "paper"),
        (["--strokes", "0"], "strokes"),
        (["--seeds", "0"], "seeds"),
        (["--iterations", "-1"], "iterations"),
        (["--color", "black"], "colour"),
    ],
)
def test_bad_options_are_refused_before_any_work(tmp_path, capsys, extra, words):
    svg = tmp_path / "x.svg"
    assert scene(FIELD, svg, *extra) == 2
    err = capsys.readouterr().err
    assert words in err and "fix:" in err
    assert not svg.exists()


def test_an_empty_mask_is_an_error_and_writes_nothing(tmp_path, capsys):
    empty = tmp_path / "empty.png"
    Image.new("L", (320, 240), 0).save(empty)
    svg = tmp_path / "x.svg"
    assert scene(FIELD, svg, "--mask", empty) == 2
    assert "marks no object pixels" in capsys.readouterr().err
    assert not svg.exists()


def test_a_full_mask_sketches_the_object_only(tmp_path, capsys):
    full = tmp_path / "full.png"
    Image.new("L", (320, 240), 255).save(full)
    svg = tmp_path / "x.svg"
    assert main(["scene", str(FIELD), "-o", str(svg), *FAST, "--mask", str(full)]) == 0
    assert "object only" in capsys.readouterr().err
    assert all(len(layer.sublayers[0].points) == 0 for layer in cells(svg))
