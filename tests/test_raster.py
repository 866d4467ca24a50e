"""The differentiable rasteriser against geometry, an exact reference, and finite differences."""

import math

import pytest
import torch

from bridge.errors import InputError
from engine.render import band_coverage, diffvg, raster, rasterize, rasterize_tapered
from engine.runtime import Runtime
from tests.reference_render import random_strokes, supersampled

SIZE = (224, 224)


def ink(image):
    """Total ink of a (..., H, W) image: the summed coverage."""
    return (1 - image).sum().item()


def test_output_shape_range_and_white_background(device):
    g = torch.Generator().manual_seed(0)
    pts = torch.stack([random_strokes(g, 8), random_strokes(g, 8)]).to(device)
    img = rasterize(pts, 1.5, (100, 120))
    assert img.shape == (2, 3, 100, 120)
    assert img.min() >= 0 and img.max() <= 1
    assert torch.equal(img[:, 0], img[:, 1]) and torch.equal(img[:, 0], img[:, 2])
    # A pixel far from every stroke is exactly white.
    blank = rasterize(torch.tensor([[[[10.0, 10.0], [20.0, 10.0]]]], device=device), 1.5, (100, 120))
    assert blank[0, :, 50:, 50:].eq(1).all()


def test_strokes_off_canvas_or_zero_width_draw_nothing():
    off = torch.tensor([[[[-50.0, -50.0], [-40.0, -30.0], [-20.0, -60.0], [-10.0, -9.0]]]])
    assert rasterize(off, 1.5, SIZE).eq(1).all()
    on = torch.tensor([[[[50.0, 50.0], [80.0, 60.0], [100.0, 90.0], [120.0, 100.0]]]])
    assert rasterize(on, torch.zeros(1, 1), SIZE).eq(1).all()


def test_horizontal_line_is_exactly_three_pixels_thick():
    # Centre line on a pixel row's centre: three fully black rows, nothing else.
    img = rasterize(torch.tensor([[[[40.0, 100.5], [180.0, 100.5]]]]), 1.5, SIZE)[0, 0]
    column = img[:, 110]
    assert column[99:102].eq(0).all()
    assert column[:99].eq(1).all() and column[102:].eq(1).all()
    # Centre line on a pixel boundary: two black rows and two half rows, still 3 px of ink per column.
    img = rasterize(torch.tensor([[[[40.0, 100.0], [180.0, 100.0]]]]), 1.5, SIZE)[0, 0]
    assert torch.allclose(img[97:103, 110], torch.tensor([1.0, 0.5, 0.0, 0.0, 0.5, 1.0]), atol=1e-5)
    assert ink(img[:, 60:160]) == pytest.approx(300.0, rel=1e-4)


def test_round_caps():
    # A dot (zero-length stroke) is a disc of radius 1.5: area pi * 1.5^2.
    dot = rasterize(torch.tensor([[[[100.3, 120.7], [100.3, 120.7]]]]), 1.5, SIZE)[0, 0]
    assert ink(dot) == pytest.approx(math.pi * 1.5**2, rel=0.05)
    # The cap extends the line by the half-width past its end point, and rounds off.
    line = rasterize(torch.tensor([[[[60.5, 100.5], [160.5, 100.5]]]]), 1.5, SIZE)[0, 0]
    # End point at x = 160.5: the cap reaches x = 162.0, the far edge of pixel 161.
    assert line[100, 161] == 0 and line[100, 162] == 1
    # The cap's corner pixel (centre at distance sqrt(2)) is only partly covered: rounded, not square.
    assert line[99, 161] == pytest.approx(1 - (2.0 - 2**0.5), abs=1e-4)
    assert ink(line) == pytest.approx(3 * 100 + math.pi * 1.5**2, rel=0.02)


@pytest.mark.parametrize("k", [4, 3, 2])
def test_matches_exact_supersampled_reference(k, device):
    g = torch.Generator().manual_seed(k)
    pts = random_strokes(g, 16, k=k)
    ours = rasterize(pts[None].to(device), 1.5, SIZE)[0, 0].cpu()
    exact = supersampled(pts, 1.5, SIZE, ss=16)
    assert (ours - exact).abs().mean() <= 0.02
    assert ink(ours) == pytest.approx(ink(exact), rel=0.05)


def test_long_curved_strokes_match_reference(device):
    # Optimised strokes get long and bent; the default polyline must still follow them.
    g = torch.Generator().manual_seed(7)
    pts = random_strokes(g, 6, step=0.25)
    ours = rasterize(pts[None].to(device), 1.5, SIZE)[0, 0].cpu()
    exact = supersampled(pts, 1.5, SIZE, ss=16)
    assert (ours - exact).abs().mean() <= 0.02
    assert ink(ours) == pytest.approx(ink(exact), rel=0.05)


def test_batch_equals_separate_renders(device):
    g = torch.Generator().manual_seed(3)
    pts = torch.stack([random_strokes(g, 12) for _ in range(5)]).to(device)
    hw = (torch.rand(5, 12, generator=g) * 2 + 0.5).to(device)
    batch = rasterize(pts, hw, SIZE)
    for i in range(5):
        assert torch.allclose(batch[i], rasterize(pts[i : i + 1], hw[i : i + 1], SIZE)[0], atol=1e-6)


def test_strokes_composite_over():
    a = torch.tensor([[[[20.0, 50.0], [200.0, 50.0]]]])
    b = torch.tensor([[[[100.0, 10.0], [100.0, 200.0]]]])
    both = rasterize(torch.cat([a, b], dim=1), 1.0, SIZE)
    expected = rasterize(a, 1.0, SIZE) * rasterize(b, 1.0, SIZE)
    assert torch.allclose(both, expected, atol=1e-5)


def test_band_coverage_is_the_box_filter():
    d = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 0.0, 0.3])
    hw = torch.tensor([1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 0.2, 0.2])
    expected = torch.tensor([1.0, 1.0, 1.0, 0.5, 0.0, 0.0, 0.4, 0.2 + 0.2])
    assert torch.allclose(band_coverage(d, hw), expected, atol=1e-6)


def _loss(pts, hw, weights):
    return (rasterize(pts, hw, (64, 64))[:, 0] * weights).sum()


def test_point_gradients_match_finite_differences():
    g = torch.Generator().manual_seed(11)
    pts = (random_strokes(g, 4, size=64, step=0.1) + 0.0)[None].requires_grad_()
    # A smooth random weighting of the pixels makes every coordinate's gradient informative.
    weights = torch.nn.functional.avg_pool2d(torch.rand(1, 1, 64, 64, generator=g), 9, 1, 4)[0]
    _loss(pts, 1.5, weights).backward()
    eps = 0.01  # small enough not to straddle the coverage ramp's kinks
    numeric = torch.zeros_like(pts)
    with torch.no_grad():
        for idx in torch.cartesian_prod(*(torch.arange(s) for s in pts.shape[1:])):
            i = (0, *idx.tolist())
            plus, minus = pts.clone(), pts.clone()
            plus[i] += eps
            minus[i] -= eps
            numeric[i] = (_loss(plus, 1.5, weights) - _loss(minus, 1.5, weights)) / (2 * eps)
    cos = torch.nn.functional.cosine_similarity(pts.grad.flatten(), numeric.flatten(), dim=0)
    assert cos > 0.99
    assert torch.allclose(pts.grad, numeric, atol=0.02 * numeric.abs().max().item())


def test_width_gradient_matches_finite_differences():
    g = torch.Generator().manual_seed(5)
    pts = random_strokes(g, 3, size=64, step=0.1)[None]
    weights = torch.rand(64, 64, generator=g)
    hw = torch.tensor([[0.3, 1.0, 1.7]], requires_grad=True)
    _loss(pts, hw, weights).backward()
    eps = 1e-2
    for j in range(3):
        plus, minus = hw.detach().clone(), hw.detach().clone()
        plus[0, j] += eps
        minus[0, j] -= eps
        numeric = (_loss(pts, plus, weights) - _loss(pts, minus, weights)) / (2 * eps)
        assert hw.grad[0, j].item() == pytest.approx(numeric.item(), rel=0.03)


def test_gradients_pull_a_stroke_towards_a_target_line():
    target = rasterize(torch.tensor([[[[30.0, 32.0], [34.0, 32.0]]]]), 1.5, (64, 64))
    pts = torch.tensor([[[[30.0, 35.0], [34.0, 35.0]]]], requires_grad=True)
    ((rasterize(pts, 1.5, (64, 64)) - target) ** 2).sum().backward()
    assert (pts.grad[..., 1] > 0).all()  # descending moves y down towards 32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_agrees_with_cpu():
    g = torch.Generator().manual_seed(2)
    pts = torch.stack([random_strokes(g, 32) for _ in range(3)]).requires_grad_()
    cpu = rasterize(pts, 1.5, SIZE)
    cpu.sum().backward()
    pts_cuda = pts.detach().cuda().requires_grad_()
    gpu = rasterize(pts_cuda, 1.5, SIZE)
    gpu.sum().backward()
    assert torch.allclose(cpu, gpu.cpu(), atol=1e-4)
    assert torch.allclose(pts.grad, pts_cuda.grad.cpu(), atol=1e-3)


needs_diffvg = pytest.mark.skipif(not diffvg.available(), reason="pydiffvg is not installed (optional)")


@needs_diffvg
@pytest.mark.parametrize("k", [4, 3, 2])
def test_diffvg_backend_matches_ours(k):
    """The official renderer through our interface: same picture up to its 4-sample noise."""
    g = torch.Generator().manual_seed(10 + k)
    pts = torch.stack([random_strokes(g, 16, k=k) for _ in range(2)])  # (2, 16, k, 2)
    theirs, ours = diffvg.rasterize(pts, 1.5, SIZE), rasterize(pts, 1.5, SIZE)
    assert theirs.shape == ours.shape == (2, 3, *SIZE)
    assert theirs.min() >= 0 and theirs.max() <= 1
    assert (theirs - ours).abs().mean() <= 0.03
    assert ink(theirs[0, 0]) == pytest.approx(ink(ours[0, 0]), rel=0.1)


@needs_diffvg
def test_diffvg_backend_gradients_agree_with_ours():
    g = torch.Generator().manual_seed(3)
    start = random_strokes(g, 8)[None]
    target = rasterize(random_strokes(g, 8)[None], 1.5, SIZE)
    grads = []
    for render in (rasterize, diffvg.rasterize):
        pts, hw = start.clone().requires_grad_(), torch.full((1, 8), 1.5, requires_grad=True)
        ((render(pts, hw, SIZE) - target) ** 2).sum().backward()
        grads.append((pts.grad.flatten(), hw.grad.flatten()))
    for ours, theirs in zip(*grads):
        assert torch.nn.functional.cosine_similarity(ours, theirs, dim=0) > 0.7


def test_runtime_draws_with_the_chosen_renderer():
    assert Runtime.create("cpu", "tiny-random").rasterize is rasterize
    if diffvg.available():
        assert Runtime.create("cpu", "tiny-random", renderer="diffvg").rasterize is diffvg.rasterize
    else:
        with pytest.raises(InputError, match="pydiffvg is not installed") as err:
            Runtime.create("cpu", "tiny-random", renderer="diffvg")
        assert "--renderer ours" in err.value.hint


@pytest.mark.parametrize("draw", [rasterize, rasterize_tapered])
@pytest.mark.parametrize("ours_threads", [1, 2])
def test_threads_change_no_result_and_the_process_gets_them_back(monkeypatch, draw, ours_threads):
    """The rasteriser runs its CPU work on CPU_THREADS torch threads whatever the process uses
    (benchmarks/README.md, "Under contention"): a pure speed choice. In a 2-thread process, at either
    count, the image and the gradients (points and widths, widths given alone too) are the same bit
    for bit as in a 1-thread process, and the process has its 2 threads back after the forward and
    after the backward."""
    g = torch.Generator().manual_seed(9)
    points = torch.stack([random_strokes(g, 24, step=0.3) for _ in range(2)])  # (2, 24, 4, 2)
    widths = torch.rand(2, 24, 1, generator=g) + 0.5  # (2, 24, 1) px
    weights = torch.rand(SIZE, generator=g)

    def run(threads: int, points_move: bool) -> tuple:
        torch.set_num_threads(threads)
        p, w = points.clone().requires_grad_(points_move), widths.clone().requires_grad_()
        hw = {"half_width": w[..., 0]} if draw is rasterize else {"knot_half_widths": w.expand(2, 24, 3)}
        image = draw(p, **hw)
        after_forward = torch.get_num_threads()
        (image[:, 0] * weights).sum().backward()
        return (image.detach(), p.grad, w.grad), (after_forward, torch.get_num_threads())

    before = torch.get_num_threads()
    monkeypatch.setattr(raster, "CPU_THREADS", ours_threads)
    try:
        for points_move in (True, False):
            one, _ = run(1, points_move)
            two, threads = run(2, points_move)
            for a, b in zip(one, two, strict=True):
                assert (a is None and b is None) or torch.equal(a, b)
            assert threads == (2, 2)
    finally:
        torch.set_num_threads(before)
