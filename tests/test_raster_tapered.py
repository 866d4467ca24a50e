"""The width-per-knot rasteriser (ink): the pen's picture for equal knots, widths where the knots
put them, and gradients that follow the coverage."""

import pytest
import torch

from engine.render import rasterize, rasterize_tapered
from tests.reference_render import random_strokes

SIZE = (224, 224)


def ink(image):
    return (1 - image).sum().item()


def test_equal_knots_draw_the_pen_stroke(device):
    g = torch.Generator().manual_seed(3)
    points = torch.stack([random_strokes(g, 6), random_strokes(g, 6)]).to(device)  # (2, 6, 4, 2)
    pen = rasterize(points, 1.5, SIZE)
    tapered = rasterize_tapered(points, torch.full((2, 6, 4), 1.5, device=device), SIZE)
    assert tapered.shape == pen.shape
    assert (tapered - pen).abs().max().item() < 1e-4


def test_width_is_linear_between_knots():
    # A horizontal line from x=20 to x=200 on a row centre, knots 1 px at the start, 5 px at the end.
    points = torch.tensor([[[[20.0, 100.5], [200.0, 100.5]]]])
    img = rasterize_tapered(points, torch.tensor([[[0.5, 2.5]]]), SIZE)[0, 0]
    for x, half in ((20, 0.5), (110, 1.5), (200, 2.5)):
        column = img[:, x]
        assert (1 - column).sum().item() == pytest.approx(2 * half, abs=0.15), x
    # Total ink: the trapezoid's area (mean width 3 px x 180 px) plus the two round caps.
    caps = torch.pi * (0.5**2 + 2.5**2) / 2
    assert ink(img) == pytest.approx(3 * 180 + caps, rel=0.02)


def test_gradient_follows_coverage_per_knot():
    points = torch.tensor([[[[30.0, 60.5], [80.0, 20.0], [140.0, 190.0], [190.0, 120.5]]]])
    knots = torch.tensor([[[1.0, 1.5, 2.0, 1.0]]], requires_grad=True)
    ink_total = (1 - rasterize_tapered(points, knots, SIZE)[:, 0]).sum()
    ink_total.backward()
    # Wider anywhere means more ink: every knot's gradient is positive, inner knots carry more length.
    assert (knots.grad > 0).all()
    # Finite differences agree with autograd for one inner knot.
    eps = 0.05
    bumped = knots.detach().clone()
    bumped[0, 0, 1] += eps
    numeric = ((1 - rasterize_tapered(points, bumped, SIZE)[:, 0]).sum() - ink_total.detach()) / eps
    assert numeric.item() == pytest.approx(knots.grad[0, 0, 1].item(), rel=0.1)


def test_gradient_reaches_points_too():
    points = torch.tensor([[[[30.0, 60.0], [80.0, 20.0], [140.0, 190.0], [190.0, 120.0]]]], requires_grad=True)
    image = rasterize_tapered(points, torch.tensor([[[1.0, 2.0, 2.0, 1.0]]]), SIZE)
    image[:, 0, :, :112].sum().backward()
    assert points.grad.abs().sum() > 0 and points.grad.isfinite().all()
