"""A scene as the official pipeline makes it: U2-Net's undilated mask cuts the object, the hole LaMa
fills is that mask dilated at U2-Net's 320 px scale, Telea only when asked, the official export's
widths, and one message naming every missing model. Models are tiny stand-ins written to files and
loaded by the real loading code."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from bridge.errors import WeightsMissing
from engine.cli import main
from engine.clip.models import cache_dir
from engine.io import automask
from engine.io.automask import U2NET, auto_mask
from engine.io.tiny_onnx import conv_sigmoid_model
from engine.io.weights import WeightsFile, download, find_weights
from engine.methods.clipascene import BACKGROUND, OBJECT, CellResult, ColumnResult, SceneRun
from engine.preprocess import CanvasMap
from engine.scene import inpaint as inpaint_module
from engine.scene.combine import matrix_sketch
from engine.scene.inpaint import LAMA, filler, tiny_lama_file
from engine.scene.split import ObjectFrame, hole_mask, split_scene
from engine.svg import sketch_to_svg
from tests.harness.paths import BALLERINA
from tests.sketch_svg import svg_to_sketch

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*(meaningless|stand-in):UserWarning"),
    pytest.mark.filterwarnings("ignore:.*torch.jit:FutureWarning"),
]

GREEN = (0, 255, 0)


class _GreenLama(torch.nn.Module):
    """A LaMa-shaped TorchScript module that paints the hole green: shows that LaMa ran, and where."""

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        green = torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1, 1)
        return image * (1 - mask) + green * mask


@pytest.fixture
def weights(tmp_path):
    """A --weights-dir holding a green "big-lama.pt" and a "u2net.onnx" that finds red things."""
    folder = tmp_path / "weights"
    folder.mkdir()
    torch.jit.script(_GreenLama()).save(str(folder / LAMA.filename))
    red_is_salient = conv_sigmoid_model(np.array([[[[4.0]], [[0.0]], [[0.0]]]]), np.zeros(1), automask.SIDE)
    (folder / U2NET.filename).write_bytes(red_is_salient)
    return folder


def square_scene(side: int) -> tuple[Image.Image, np.ndarray]:
    """A side x side photo: blue, a red square of 3/4 of the side in the middle (large: not enlarged)."""
    pixels = np.zeros((side, side, 3), np.uint8)
    pixels[:] = (0, 0, 255)
    lo, hi = side // 8, side - side // 8
    pixels[lo:hi, lo:hi] = (255, 0, 0)
    mask = np.zeros((side, side), bool)
    mask[lo:hi, lo:hi] = True
    return Image.fromarray(pixels), mask


@pytest.mark.parametrize("side, radius", [(224, 4), (500, 8), (2000, 31)])
def test_object_cut_undilated_and_hole_dilated_at_the_320_px_scale(side, radius):
    """11 x 11 at 320 px is a radius of 5 / 320 of the side (1.6 %), whatever the photo's size."""
    assert radius == round(5 * side / 320)
    image, mask = square_scene(side)
    holes = []

    def fill(photo, hole):
        holes.append(hole)
        return photo, "filled"

    split = split_scene(image, mask, fill)
    (hole,) = holes
    rows, cols = np.nonzero(hole)
    lo, hi = side // 8, side - side // 8 - 1  # the mask's first and last pixel
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (lo - radius, hi + radius, lo - radius, hi + radius)
    assert np.array_equal(hole_mask(mask), hole)
    obj = np.asarray(split.object_image)
    assert split.frame == ObjectFrame(), "a large object stays where it is"
    assert np.array_equal(obj[mask], np.asarray(image)[mask]), "the object is the photo inside the mask"
    assert (obj[~mask] == 255).all(), "and white right outside it: no band of the room around it"
    assert split.mask is mask, "background strokes stop at the undilated mask"


def test_a_non_square_photo_grows_each_side_at_its_own_scale():
    mask = np.zeros((320, 960), bool)
    mask[160, 480] = True
    rows, cols = np.nonzero(hole_mask(mask))
    assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == (11, 31)


def test_the_u2net_mask_is_the_thresholded_undilated_map_at_the_photos_size(weights):
    image, expected = square_scene(500)
    mask = auto_mask(image, "openai", str(weights))  # the crafted file, found as the real one would be
    assert mask.shape == (500, 500)
    assert (mask != expected).mean() < 0.01, "the red square, not grown"


def test_the_u2net_stand_in_loads_through_the_same_session_code(monkeypatch):
    monkeypatch.setattr(automask, "_SESSIONS", {})
    image, _ = square_scene(100)
    mask = auto_mask(image, "tiny-random")
    assert mask.shape == (100, 100) and mask.dtype == bool
    assert list(automask._SESSIONS) == [str(automask.tiny_u2net_file())]


def test_lama_fills_the_hole_when_its_weights_are_there(weights):
    image, mask = square_scene(101)  # an odd size: LaMa's input is padded to multiples of 8, then cropped
    hole = hole_mask(mask)
    filled, note = filler("lama", "openai", str(weights))(image, hole)
    pixels = np.asarray(filled)
    assert "LaMa" in note and filled.size == image.size
    assert (np.abs(pixels[hole].astype(int) - GREEN).max(axis=1) <= 2).mean() > 0.97, "LaMa's fill in the hole"
    assert np.array_equal(pixels[~hole], np.asarray(image)[~hole]), "nothing else changes"


def test_telea_fills_only_when_asked_and_says_so(weights):
    image, mask = square_scene(101)
    hole = hole_mask(mask)
    filled, note = filler("telea", "openai", str(weights))(image, hole)
    assert "Telea, as asked" in note
    assert not (np.asarray(filled)[hole] == GREEN).all(axis=1).any(), "LaMa did not run"


def test_a_scene_uses_lama_by_default_and_never_falls_back_to_telea(tmp_path, capsys, isolated_home):
    out = tmp_path / "b.svg"
    fast = ["--models", "tiny-random", "--strokes", "4", "--seeds", "1", "--iterations", "1", "--levels", "1"]
    assert main(["scene", str(BALLERINA), "-o", str(out), "--layers", "2", "--aug-bank", "2", *fast]) == 0
    err = capsys.readouterr().err
    assert "U2-Net" in err and "LaMa" in err and "Telea" not in err
    # Real weights that are not there: exit 3, no silent Telea, nothing written.
    empty = tmp_path / "empty"
    empty.mkdir()
    svg = tmp_path / "c.svg"
    assert main(["scene", str(BALLERINA), "-o", str(svg), "--weights-dir", str(empty), "-q"]) == 3
    assert not svg.exists()


def test_one_message_names_every_missing_model_and_the_folder(tmp_path, capsys, isolated_home):
    svg = tmp_path / "x.svg"
    assert main(["scene", str(BALLERINA), "-o", str(svg), "--device", "cpu"]) == 3
    err = capsys.readouterr().err
    folder = str(cache_dir())
    for name in ("ViT-B-32.pt", "u2net.onnx", "big-lama.pt"):
        assert name in err
    assert folder in err and "--weights-dir" in err
    assert not svg.exists()
    # Only what the run needs: no mask means neither U2-Net nor LaMa.
    assert main(["scene", str(BALLERINA), "-o", str(svg), "--mask", "none", "--device", "cpu"]) == 3
    err = capsys.readouterr().err
    assert "ViT-B-32.pt" in err and "u2net.onnx" not in err and "big-lama.pt" not in err


def test_a_download_is_kept_only_whole_and_with_the_published_checksum(tmp_path):
    source = tmp_path / "published.bin"
    source.write_bytes(b"weights" * 1000)
    good = WeightsFile("model.bin", "7 kB", source.as_uri(), hashlib.md5(source.read_bytes()).hexdigest())
    cache = tmp_path / "cache"
    assert download(good, cache).read_bytes() == source.read_bytes()
    bad = WeightsFile("other.bin", "7 kB", source.as_uri(), "0" * 32)
    with pytest.raises(ValueError, match="MD5"):
        download(bad, cache)
    assert sorted(p.name for p in cache.iterdir()) == ["model.bin"], "no partial or unchecked file left"
    assert find_weights(good, cache) == cache / "model.bin"
    with pytest.raises(WeightsMissing) as info:
        find_weights(bad, cache)
    assert "other.bin" in info.value.message and str(cache) in info.value.hint


def test_an_unreadable_lama_file_is_named(tmp_path):
    folder = tmp_path / "w"
    folder.mkdir()
    (folder / LAMA.filename).write_bytes(b"not a model")
    image, mask = square_scene(40)
    with pytest.raises(Exception, match="not a readable LaMa") as info:
        filler("lama", "openai", str(folder))(image, hole_mask(mask))
    assert LAMA.url in info.value.hint


def test_the_tiny_lama_stand_in_is_a_torchscript_file_loaded_like_the_real_one(tmp_path):
    folder = tmp_path / "w"
    folder.mkdir()
    shutil.copy(tiny_lama_file(), folder / LAMA.filename)
    image, mask = square_scene(64)
    a, _ = filler("lama", "openai", str(folder))(image, hole_mask(mask))
    b, _ = filler("lama", "tiny-random")(image, hole_mask(mask))
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert any(key[0] == str(tiny_lama_file()) for key in inpaint_module._MODELS)


# --- the official export -------------------------------------------------------------------------


def strokes(n: int) -> torch.Tensor:
    """n short horizontal strokes across the canvas's middle band (canvas px)."""
    y = torch.linspace(40, 180, n)
    x = torch.tensor([30.0, 50.0, 70.0, 90.0])
    return torch.stack([torch.stack([x, torch.full((4,), float(v))], -1) for v in y])


def test_simplified_cells_draw_each_stroke_at_presence_times_the_width_and_an_empty_cell_shows_the_row_above():
    n, width = 4, 3.0
    points = strokes(n)
    presence = torch.tensor([0.95, 0.8, 0.75, 0.1])
    importance = torch.tensor([0.9, 0.8, 0.7, 0.1])
    cells = [
        CellResult(0, points, torch.ones(n, dtype=torch.bool), importance, 0, 0, {}),
        CellResult(1, points, presence > 0.7, importance, 0, 0, {}, 0.5, presence),
        CellResult(2, points, torch.zeros(n, dtype=torch.bool), importance, 0, 0, {}, 0.4, torch.full((n,), 0.2)),
    ]
    run = SceneRun([ColumnResult(BACKGROUND, 8, cells), ColumnResult(OBJECT, 8, cells)], 1, 0.0)
    sketch, matrix = matrix_sketch(run, CanvasMap(224, 224), ObjectFrame(), None, (0, 1, 2), 2, width, "#000")
    row0, row1, row2 = (matrix[(8, r)].sublayers[0] for r in range(3))
    assert row0.widths == pytest.approx((width,) * n), "the fidelity row at full width"
    assert row1.widths == pytest.approx((0.95 * width, 0.8 * width, 0.75 * width))
    assert row2.widths == row1.widths and np.array_equal(row2.points, row1.points), "empty: the row above"
    # The SVG carries the widths, and reads back the same strokes.
    back = svg_to_sketch(sketch_to_svg(sketch))
    svg_row1 = back.layers[0].sublayers[1].sublayers[0]
    assert np.allclose(svg_row1.points, row1.points, atol=1e-3)
    assert b"stroke-width:2.4;" in sketch_to_svg(sketch)


def test_install_places_the_scene_models_with_clips_and_names_those_still_missing(tmp_path, capsys):
    import install

    source, folder = tmp_path / "from", tmp_path / "cache"
    source.mkdir()
    for name in ("RN101.pt", "ViT-B-32.pt", U2NET.filename):
        (source / name).write_bytes(name.encode())
    install._place_weights(source, folder)
    assert sorted(p.name for p in folder.iterdir()) == sorted(["RN101.pt", "ViT-B-32.pt", U2NET.filename])
    assert (folder / U2NET.filename).samefile(source / U2NET.filename)
    out = capsys.readouterr().out
    assert "u2net.onnx placed" in out and f"Scenes also need {LAMA.filename}" in out
