"""Stroke initialisation (saliency x XDoG edges, docs/method.md#stroke-initialisation); the
augmentations are tested in test_augment.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from engine.clip.features import attention_saliency, normalize
from engine.clip.models import VIT_B32
from engine.methods.init import gaussian_blur, otsu_threshold, sample_strokes, start_distribution, xdog_ink

SIZE = 224


def white_with(fill_box=None, outline_box=None, thickness=3) -> torch.Tensor:
    """A CLIP-normalised (3, 224, 224) white image with a black filled or outlined square."""
    img = torch.ones(1, 3, SIZE, SIZE)
    if fill_box:
        lo, hi = fill_box
        img[..., lo:hi, lo:hi] = 0
    if outline_box:
        lo, hi = outline_box
        img[..., lo:hi, lo:hi] = 0
        img[..., lo + thickness : hi - thickness, lo + thickness : hi - thickness] = 1
    return normalize(img)[0]


def distance_to_box_outline(lo, hi, thickness):
    """(224, 224) Chebyshev distance of every pixel to the outline ring [lo, hi) minus its inside."""
    y, x = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    outer = torch.maximum(torch.maximum(lo - x, x - (hi - 1)), torch.maximum(lo - y, y - (hi - 1)))
    inner_lo, inner_hi = lo + thickness, hi - thickness
    inner = torch.minimum(torch.minimum(x - inner_lo, inner_hi - 1 - x), torch.minimum(y - inner_lo, inner_hi - 1 - y))
    return torch.maximum(outer, inner + 1).clamp(min=0)


# --- XDoG -----------------------------------------------------------------------------------------


def test_xdog_ink_follows_a_drawn_outline_and_leaves_flat_areas_blank():
    lo, hi, t = 60, 163, 3
    ink = xdog_ink(white_with(outline_box=(lo, hi), thickness=t))
    distance = distance_to_box_outline(lo, hi, t)
    ring = distance == 0
    assert ink[ring].all(), "every pixel of the drawn line is an edge"
    assert not ink[distance > 1].any(), "no ink in the flat white inside or outside the square"
    # Each of the four sides is found, not just a corner.
    for side in (ink[lo:hi, lo], ink[lo:hi, hi - 1], ink[lo, lo:hi], ink[hi - 1, lo:hi]):
        assert side.all()


def test_xdog_ink_stays_on_a_filled_dark_square_never_on_the_white_background():
    # As the reference (XDoG thresholded by Otsu), a dark region renders dark: the ink covers the
    # square; nothing in the white area around it, however close, is ink.
    lo, hi = 60, 160
    ink = xdog_ink(white_with(fill_box=(lo, hi)))
    square = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    square[lo:hi, lo:hi] = True
    assert ink.any()
    assert not ink[~square].any()
    assert ink[lo:hi, lo].all() and ink[lo, lo:hi].all(), "the square's border is ink"


def test_xdog_ink_of_a_blank_image_is_empty():
    assert not xdog_ink(normalize(torch.ones(1, 3, SIZE, SIZE))[0]).any()


# --- Otsu and the Gaussian blur -------------------------------------------------------------------


def test_otsu_threshold_splits_a_bimodal_sample_between_its_modes():
    g = torch.Generator().manual_seed(0)
    dark = 0.1 + 0.2 * torch.rand(3000, generator=g)  # [0.1, 0.3]
    bright = 0.7 + 0.2 * torch.rand(1000, generator=g)  # [0.7, 0.9]
    values = torch.cat([dark, bright])[torch.randperm(4000, generator=g)]
    t = otsu_threshold(values)
    # As skimage's threshold_otsu, the threshold is the centre of the last bin of the lower class:
    # in the gap between the modes, give or take half a bin (values span 0.8 over 256 bins).
    assert dark.max() - 0.8 / 256 < t < bright.min()
    assert (dark < t).float().mean() > 0.99 and (bright >= t).all()


def test_otsu_threshold_of_a_constant_is_that_constant():
    assert otsu_threshold(torch.full((10, 10), 0.25)) == pytest.approx(0.25)


def test_gaussian_blur_keeps_a_constant_image_constant():
    out = gaussian_blur(torch.full((80, 70), 0.7, dtype=torch.float64), 8.0)
    assert torch.allclose(out, torch.full_like(out, 0.7), atol=1e-12)


def _scipy_gaussian():
    ndimage = pytest.importorskip("scipy.ndimage")
    return ndimage.gaussian_filter


@pytest.mark.parametrize("sigma", [0.8, 8.0])
def test_gaussian_blur_matches_scipy_away_from_the_border(sigma):
    gaussian_filter = _scipy_gaussian()
    img = torch.rand(70, 60, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ours = gaussian_blur(img, sigma).numpy()
    ref = gaussian_filter(img.numpy(), sigma, mode="reflect", truncate=4.0)
    r = int(4 * sigma + 0.5)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours[r:-r, r:-r], ref[r:-r, r:-r], atol=1e-12)


@pytest.mark.parametrize("sigma", [0.8, 8.0])
def test_gaussian_blur_matches_scipy_reflect_everywhere(sigma):
    gaussian_filter = _scipy_gaussian()
    img = torch.rand(70, 60, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    np.testing.assert_allclose(
        gaussian_blur(img, sigma).numpy(), gaussian_filter(img.numpy(), sigma, mode="reflect", truncate=4.0), atol=1e-9
    )


def test_gaussian_blur_preserves_the_mean():
    img = torch.rand(70, 60, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for sigma in (0.8, 8.0):
        assert gaussian_blur(img, sigma).mean().item() == pytest.approx(img.mean().item(), abs=1e-9)


# --- the start distribution -----------------------------------------------------------------------


def test_start_distribution_is_a_softmax_over_salient_ink_only():
    g = torch.Generator().manual_seed(3)
    saliency = torch.rand(32, 32, generator=g) * 0.5 + 0.2
    saliency[5, 5] = 0.1  # the minimum: zero after min-max normalisation
    ink = torch.rand(32, 32, generator=g) > 0.7
    ink[5, 5] = True
    p = start_distribution(saliency, ink, temperature=0.3)
    assert p.shape == (32, 32)
    assert p.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert p[~ink].eq(0).all(), "off-ink pixels are exactly 0"
    assert p[5, 5] == 0, "zero saliency is exactly 0 even on ink"
    assert (p[ink] > 0).sum() == ink.sum() - 1
    # Softmax with temperature 0.3 on the min-max normalised saliency.
    s = (saliency - saliency.min()) / (saliency.max() - saliency.min())
    (y1, x1), (y2, x2) = ink.nonzero()[1:3].tolist()
    ratio = (p[y1, x1] / p[y2, x2]).item()
    assert ratio == pytest.approx(math.exp((s[y1, x1] - s[y2, x2]).item() / 0.3), rel=1e-4)


@pytest.fixture(scope="module")
def horse_init(runtime, animal_target):
    """The real pipeline's inputs on the horse: ink mask and start distribution (tiny ViT)."""
    x = normalize(animal_target)
    saliency = attention_saliency(runtime.clip(VIT_B32).visual, x)[0].float()
    ink = xdog_ink(x[0])
    return ink, start_distribution(saliency, ink)


def test_horse_edges_are_a_sparse_subset_of_the_image(horse_init):
    ink, p = horse_init
    fraction = ink.float().mean().item()
    assert 0.02 < fraction < 0.4, f"ink covers {fraction:.1%} of the canvas"
    assert p.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert p[~ink].eq(0).all()


# --- sampling -------------------------------------------------------------------------------------


def test_sampled_start_points_are_distinct_ink_pixel_centres(horse_init):
    ink, p = horse_init
    pts = sample_strokes(p, 64, 4, torch.Generator().manual_seed(0))
    assert pts.shape == (64, 4, 2)
    start = pts[:, 0]
    assert torch.equal(start - 0.5, (start - 0.5).round()), "p0 are pixel centres"
    col, row = (start - 0.5).long().unbind(-1)
    assert len({(c, r) for c, r in zip(col.tolist(), row.tolist())}) == 64, "drawn without replacement"
    assert ink[row, col].all(), "every start point is on an XDoG ink pixel"
    assert (p[row, col] > 0).all()


@pytest.mark.parametrize("k", [2, 3, 4])
def test_later_points_are_a_small_random_walk(horse_init, k):
    _, p = horse_init
    pts = sample_strokes(p, 200, k, torch.Generator().manual_seed(1))
    steps = pts[:, 1:] - pts[:, :-1]
    limit = 0.025 * SIZE
    assert steps.abs().max() <= limit + 1e-4
    # A uniform walk, not a constant offset: the steps use most of the allowed range both ways.
    assert steps.max() > 0.8 * limit and steps.min() < -0.8 * limit


def test_sampling_is_deterministic_for_a_seed(horse_init):
    _, p = horse_init
    a = sample_strokes(p, 16, 4, torch.Generator().manual_seed(1000))
    b = sample_strokes(p, 16, 4, torch.Generator().manual_seed(1000))
    c = sample_strokes(p, 16, 4, torch.Generator().manual_seed(2000))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_sampling_falls_back_to_other_pixels_when_ink_is_scarce():
    p = torch.zeros(20, 30)
    hot = [(3, 4), (10, 20), (15, 2)]
    for r, c in hot:
        p[r, c] = 1 / 3
    pts = sample_strokes(p, 10, 4, torch.Generator().manual_seed(0))
    start = {(int(y - 0.5), int(x - 0.5)) for x, y in pts[:, 0].tolist()}
    assert len(start) == 10, "still 10 distinct start points"
    assert set(hot) <= start, "every positive pixel is used first"
    assert all(0 <= r < 20 and 0 <= c < 30 for r, c in start)


def test_sampling_an_empty_distribution_still_gives_strokes():
    # A blank photo has no ink at all: the distribution is all zero (or NaN); strokes still start
    # somewhere on the canvas instead of crashing.
    ink = torch.zeros(24, 24, dtype=torch.bool)
    p = start_distribution(torch.rand(24, 24, generator=torch.Generator().manual_seed(0)), ink)
    pts = sample_strokes(p, 5, 4, torch.Generator().manual_seed(0))
    assert pts.shape == (5, 4, 2) and torch.isfinite(pts).all()
    assert ((pts[:, 0] > 0) & (pts[:, 0] < 24)).all()
