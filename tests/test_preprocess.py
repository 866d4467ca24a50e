"""The 224 x 224 canvas: padding to a centred square, masking, and the exact map back."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from engine.io.image import load_image, load_mask
from engine.preprocess import CanvasMap, prepare_target
from tests.harness.paths import BALLERINA, BALLERINA_MASK

# --- CanvasMap -----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(500, 500), (300, 100), (100, 300), (301, 100), (7, 1000)])
def test_round_trip(size):
    cmap = CanvasMap(*size)
    points = np.random.default_rng(0).uniform(-50, 300, (6, 4, 2))  # any (..., 2) shape
    np.testing.assert_allclose(cmap.to_source(cmap.to_canvas(points)), points, atol=1e-9)
    np.testing.assert_allclose(cmap.to_canvas(cmap.to_source(points)), points, atol=1e-9)
    assert cmap.to_source(points).shape == points.shape


def test_landscape_corners():
    cmap = CanvasMap(300, 100)  # padded to 300 x 300 with 100 px above and below
    assert cmap.scale == pytest.approx(300 / 224) and cmap.offset == (0, 100)
    corners = np.array([[0, 0], [300, 0], [0, 100], [300, 100]], dtype=float)
    top, bottom = 100 * 224 / 300, 200 * 224 / 300
    expected = [[0, top], [224, top], [0, bottom], [224, bottom]]
    np.testing.assert_allclose(cmap.to_canvas(corners), expected)
    # The canvas square covers the padded square, padding included.
    canvas_corners = np.array([[0, 0], [224, 224]])
    np.testing.assert_allclose(cmap.to_source(canvas_corners), [[0, -100], [300, 200]])


def test_portrait_corners():
    cmap = CanvasMap(100, 300, canvas=448)
    assert cmap.offset == (100, 0)
    left, right = 100 * 448 / 300, 200 * 448 / 300
    photo_corners = np.array([[0, 0], [100, 300]])
    np.testing.assert_allclose(cmap.to_canvas(photo_corners), [[left, 0], [right, 448]])


def test_odd_padding_is_whole_pixels():
    """So the photo is pasted without resampling; the extra pixel of padding goes below."""
    assert CanvasMap(301, 100).offset == (0, 100)


# --- prepare_target ------------------------------------------------------------------------------


def _canvas_mask(mask: np.ndarray) -> torch.Tensor:
    """(224, 224) bool: the object mask (H, W) through the photo's own padding and resize (drawn black
    on white, so that the white padding is background)."""
    ink = Image.fromarray(np.where(mask, 0, 255).astype(np.uint8)).convert("RGB")
    return prepare_target(ink, None)[0][0, 0] < 0.5


def test_masked_scene_background_is_white():
    image = load_image(BALLERINA)
    mask, _ = load_mask(BALLERINA_MASK, image.size)
    target, cmap = prepare_target(image, mask)
    assert target.shape == (1, 3, 224, 224) and target.dtype == torch.float32
    assert target.min() >= 0 and target.max() <= 1
    assert cmap == CanvasMap(500, 500)
    # Background well away from the object (bicubic blends a few pixels at its edge) is pure white.
    near_object = F.max_pool2d(_canvas_mask(mask)[None, None].float(), 9, stride=1, padding=4)[0, 0] > 0
    background = target[0][:, ~near_object]  # (3, n)
    assert background.shape[1] > 10_000 and torch.all(background == 1)
    # The unmasked photo is not white there: the mask did the work.
    plain, _ = prepare_target(image, None)
    assert plain[0][:, ~near_object].mean() < 0.9
    # And the object is still there.
    assert target[0][:, _canvas_mask(mask)].mean() < 0.9


def test_landscape_is_padded_not_cropped():
    black = Image.new("RGB", (300, 100), (0, 0, 0))
    target, cmap = prepare_target(black, None)
    rows = target[0].amin(dim=(0, 2))  # (224,) darkest value per row
    top, bottom = cmap.to_canvas(np.array([[0, 0], [0, 100]]))[:, 1]  # 74.7, 149.3
    assert torch.all(rows[: int(top)] == 1) and torch.all(rows[int(bottom) + 1 :] == 1)
    # The whole width is photo: the left and right edge columns are black in the middle.
    middle = target[0, :, int(top) + 2 : int(bottom) - 1]  # (3, rows, 224)
    assert torch.all(middle[..., 0] == 0) and torch.all(middle[..., -1] == 0)


def test_portrait_is_padded_left_and_right():
    target, _ = prepare_target(Image.new("RGB", (100, 300), (0, 0, 0)), None)
    assert torch.all(target[0, :, :, :70] == 1) and torch.all(target[0, :, :, 155:] == 1)
    assert torch.all(target[0, :, :, 80:145] == 0)


def test_target_rejects_a_mask_of_the_wrong_size():
    with pytest.raises(ValueError, match="mask shape"):
        prepare_target(Image.new("RGB", (20, 10)), np.ones((20, 10), dtype=bool))


def test_an_object_lands_where_it_is_in_the_photo():
    """An object drawn at a known place in the photo lands at the matching canvas place, and maps back
    to where it is in the photo."""
    photo = Image.new("RGB", (400, 200), (255, 255, 255))
    photo.paste((0, 0, 0), (260, 40, 340, 120))  # black square, centre (300, 80)
    mask = np.asarray(photo.convert("L")) < 128  # (200, 400): True on the square
    target, cmap = prepare_target(photo, mask)
    ys, xs = torch.nonzero(target[0, 0] < 0.5, as_tuple=True)
    centre = np.array([xs.float().mean() + 0.5, ys.float().mean() + 0.5])  # pixel centres
    np.testing.assert_allclose(cmap.to_source(centre), [300, 80], atol=1.0)
    assert torch.equal(target[0, 0] < 0.5, _canvas_mask(mask))
