"""Scene handling around CLIPascene: the object / background split, the vector combination, and the
`sketch-abstraction scene` command end to end with tiny random CLIP models."""

from __future__ import annotations

import os

import numpy as np
import pytest
from lxml import etree
from PIL import Image

from engine.cli import main
from engine.io.image import load_mask
from engine.scene.combine import bezier_points, clip_outside, split_bezier, sub_curve
from engine.scene.split import ObjectFrame, dilate, inpaint, keep_large_components, normalise_object, split_scene
from engine.svg import svg_to_sketch
from tests.conftest import BALLERINA, BALLERINA_MASK, FIELD, FIELD_MASK

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


def test_the_background_mask_is_dilated_eleven_by_eleven():
    mask = np.zeros((40, 40), bool)
    mask[20, 20] = True
    grown = dilate(mask)
    rows, cols = np.nonzero(grown)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (15, 25, 15, 25)


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


def test_inpainting_fills_the_object_and_leaves_the_rest():
    image, mask = small_object_scene()
    region = dilate(mask)
    filled, note = inpaint(image, region)
    pixels = np.asarray(filled).astype(int)
    assert "OpenCV" in note or "LaMa" in note
    assert np.array_equal(pixels[~region], np.asarray(image)[~region]), "outside the hole nothing changes"
    assert pixels[45, 40, 2] > 200 and pixels[45, 40, 0] < 60, "the red object is gone, blue fills in"


def test_no_mask_means_one_object_and_a_full_mask_means_no_background():
    image, mask = small_object_scene()
    alone = split_scene(image, None)
    assert alone.background_image is None and alone.mask is None and alone.object_image is image
    full = split_scene(image, np.ones_like(mask))
    assert full.background_image is None and "whole image" in full.notes[0]
    both = split_scene(image, mask)
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
    pieces, index = clip_outside(strokes, mask)
    assert index.tolist() == [0, 0, 2]
    assert np.array_equal(pieces[2], strokes[2])
    for piece in pieces:
        xy = bezier_points(piece, np.linspace(0, 1, 200))
        assert not mask[xy[:, 1].astype(int), xy[:, 0].astype(int)].any()
    assert pieces[0][0, 0] == 10 and pieces[0][-1, 0] < 30 and pieces[1][0, 0] >= 70 and pieces[1][-1, 0] == 90


# --- the command ----------------------------------------------------------------------------------


def scene(image, out, *extra) -> int:
    return main(["scene", str(image), "-o", str(out), *FAST, "-q", *map(str, extra)])


def cells(svg):
    return svg_to_sketch(svg.read_bytes()).layers


def test_one_layer_per_cell_with_object_and_background_over_the_photo(tmp_path):
    svg = tmp_path / "ballerina.svg"
    assert scene(BALLERINA, svg, "--mask", BALLERINA_MASK, "--layers", "2,11") == 0
    layers = cells(svg)
    root = etree.fromstring(svg.read_bytes())
    assert root.get("viewBox") == "0 0 500 500"
    assert [layer.label for layer in layers] == [
        "Fidelity 2 - Simplicity 0/2",
        "Fidelity 2 - Simplicity 1/2",
        "Fidelity 2 - Simplicity 2/2",
        "Fidelity 11 - Simplicity 0/2",
        "Fidelity 11 - Simplicity 1/2",
        "Fidelity 11 - Simplicity 2/2",
    ]
    assert [layer.visible for layer in layers] == [True] + [False] * 5
    hidden = root.xpath("//*[@style='display:none']")
    assert len(hidden) == 5
    mask, _ = load_mask(BALLERINA_MASK, (500, 500))
    near_object = dilate(mask, 61)
    for layer in layers:
        assert [s.label for s in layer.sublayers] == ["Object", "Background"] and len(layer.points) == 0
        obj, background = layer.sublayers
        assert 0 < len(obj.points) <= 8
        assert len(background.points) > 0
        # No background ink inside the object mask (sampled along every stroke).
        for stroke in background.points:
            xy = bezier_points(stroke, np.linspace(0, 1, 100))
            col, row = np.clip(xy[:, 0].astype(int), 0, 499), np.clip(xy[:, 1].astype(int), 0, 499)
            assert not mask[row, col].any()
        # Object strokes start on the object's edges, so mapped back to the photo they lie on it
        # (within MLP_loc's initial offset, up to ~10 canvas px = ~25 photo px).
        for x, y in obj.points[:, 0]:
            assert near_object[int(np.clip(y, 0, 499)), int(np.clip(x, 0, 499))], (x, y)
    assert sorted(os.listdir(tmp_path)) == ["ballerina.svg"], "no temp file left behind"


def test_the_paper_grid_writes_rows_1_3_5_7(tmp_path):
    svg = tmp_path / "grid.svg"
    assert scene(FIELD, svg, "--levels", "7", "--paper-grid") == 0
    assert [layer.label for layer in cells(svg)] == [f"Fidelity 2 - Simplicity {r}/7" for r in (1, 3, 5, 7)]


def test_without_a_mask_the_whole_image_is_one_object(tmp_path, capsys):
    svg = tmp_path / "field.svg"
    assert main(["scene", str(FIELD), "-o", str(svg), *FAST]) == 0
    for layer in cells(svg):
        obj, background = layer.sublayers
        assert len(obj.points) > 0 and len(background.points) == 0
    err = capsys.readouterr().err
    assert "no mask" in err and "wrote" in err


def test_a_mask_of_another_size_is_resized_and_said_so(tmp_path, capsys):
    small = tmp_path / "mask.png"
    Image.open(FIELD_MASK).resize((160, 120), Image.Resampling.NEAREST).save(small)
    svg = tmp_path / "field.svg"
    assert main(["scene", str(FIELD), "-o", str(svg), *FAST, "--mask", str(small)]) == 0
    assert "resized to 320x240" in capsys.readouterr().err
    assert all(len(layer.sublayers[1].points) > 0 for layer in cells(svg))


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
    assert all(len(layer.sublayers[1].points) == 0 for layer in cells(svg))
