"""A differentiable rasteriser for open, round-capped strokes: diffvg's job for CLIPasso, in PyTorch.

How it works, and why:
- Each curve becomes a polyline of `segments` pieces (Bézier sampled at equal parameter steps).
- A pixel's coverage by one stroke is the exact 1-D box-filter coverage of a band of half-width `hw`
  at the pixel centre's distance `d` from the polyline: clamp(min(d + hw, 1/2) - max(d - hw, -1/2)).
  For hw >= 1/2 this is diffvg-like anti-aliasing (1 inside, a 1 px ramp at the edge); for thinner
  strokes coverage shrinks with the width, so width can act as presence (CLIPascene) and width 0
  draws nothing. Distance to the segment end points gives round caps for free.
- Strokes composite with "over" (black ink on white): image = prod_i (1 - coverage_i), summed in log
  space with one index_add, so it batches any number of strokes.
- Sparse work: the canvas is cut into `tile` x `tile` tiles and only (stroke, tile) pairs that a
  stroke can reach are evaluated. The distance from a pixel to a stroke (the minimum over its
  segments) is a custom autograd function that keeps only the winning segment per pixel, so memory
  grows with the pixels a stroke touches, never with pixels x segments.
"""

from __future__ import annotations

import functools

import torch

from .bezier import sample_polyline

# Pixels are squares [i, i + 1); samples sit at their centres.
_PIXEL_CENTRE = 0.5
# Keeps log(1 - coverage) finite where a stroke fully covers a pixel (contributes exp(-13.8) ~ 1e-6).
_MAX_COVERAGE = 1.0 - 1e-6
# Bounds the (pairs x pixels x segments) scratch tensor of the distance search: ~64 MiB of fp32.
_SEARCH_CHUNK = 1 << 24
# Torch threads the rasteriser's CPU work (forward and backward) runs on. Its ops are many and small:
# on a 2-core machine kept busy by another process, two threads that wait for each other at every op
# slowed it 3.2-3.3x, one 1.7x: the scheduler's fair share (1.8x), no more than the naive renderer's
# 2 threads (1.8-2.0x) (benchmarks/README.md, "Under contention").
CPU_THREADS = 1


class _ThreadsInBackward(torch.autograd.Function):
    """Identity whose backward sets torch's CPU thread count to `threads` before the gradient flows
    on: placed on the rasteriser's output it starts the rasteriser's backward on CPU_THREADS, placed
    on its inputs it gives the rest of the backward (CLIP's side of the graph) the threads back."""

    @staticmethod
    def forward(ctx, tensor, threads: int):
        ctx.threads = threads
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad):
        torch.set_num_threads(ctx.threads)
        return grad, None


def _few_cpu_threads(draw):
    """Run `draw(points, ...)` on at most CPU_THREADS torch threads where `points` is on the CPU,
    its forward here and its backward through _ThreadsInBackward boundaries; the process's thread
    count is restored after each (the first input whose gradient is complete restores it). The thread
    count changes no result: every op is the same whatever the threads (tests/test_raster.py)."""

    @functools.wraps(draw)
    def wrapper(points, *args, **kwargs):
        before = torch.get_num_threads()
        if points.device.type != "cpu" or before <= CPU_THREADS:
            return draw(points, *args, **kwargs)

        def restoring(value):
            grows_graph = isinstance(value, torch.Tensor) and value.requires_grad
            return _ThreadsInBackward.apply(value, before) if grows_graph else value

        inputs = [restoring(a) for a in args]
        keywords = {k: restoring(v) for k, v in kwargs.items()}
        torch.set_num_threads(CPU_THREADS)
        try:
            image = draw(restoring(points), *inputs, **keywords)
        finally:
            torch.set_num_threads(before)
        return _ThreadsInBackward.apply(image, CPU_THREADS) if image.requires_grad else image

    return wrapper


def default_segments(k: int) -> int:
    """Polyline pieces per curve: one for a straight stroke; 16 keep a cubic within ~0.1 px at CLIPasso sizes."""
    return 1 if k == 2 else 16


@_few_cpu_threads
def rasterize(
    points: torch.Tensor,
    half_width: float | torch.Tensor = 1.5,
    size: tuple[int, int] = (224, 224),
    *,
    segments: int | None = None,
    tile: int = 8,
) -> torch.Tensor:
    """Render black strokes on white.

    points: (B, n, k, 2) Bézier control points (x, y) in pixels; k = 4 cubic, 3 quadratic, 2 line.
    half_width: a float, or (B, n) per-stroke half-widths in pixels (diffvg's `stroke_width`).
    size: (H, W) of the canvas.
    segments: polyline pieces per curve (default: `default_segments(k)`).
    tile: side of the square tiles used to find which pixels a stroke can reach.

    Returns (B, 3, H, W) in [0, 1]: 1 - coverage, differentiable w.r.t. points and half_width.
    """
    B, n, k, _ = points.shape
    H, W = size
    device = points.device
    points = points.float()
    hw = torch.as_tensor(half_width, dtype=torch.float32, device=device).expand(B, n).reshape(B * n)
    polyline = sample_polyline(points, segments or default_segments(k)).reshape(B * n, -1, 2)

    tiles_x, tiles_y = -(-W // tile), -(-H // tile)
    pair_stroke, pair_tile = _reachable_pairs(polyline.detach(), hw.detach() + 0.5, tiles_x, tiles_y, tile)
    grid = _tile_pixel_offsets(tile, device)  # (Q, 2) with Q = tile * tile
    origin = torch.stack([pair_tile % tiles_x, pair_tile // tiles_x], dim=-1) * tile  # (P, 2) px
    pixels = origin[:, None, :].float() + grid  # (P, Q, 2) pixel centres

    d = PolylineDistance.apply(polyline, pair_stroke, pixels)  # (P, Q)
    coverage = band_coverage(d, hw[pair_stroke, None])  # (P, Q)
    log_transmittance = torch.log1p(-coverage.clamp(max=_MAX_COVERAGE))

    # Every pair is a distinct (stroke, tile), so each (stroke, pixel) is summed exactly once.
    Hp, Wp = tiles_y * tile, tiles_x * tile
    batch = pair_stroke // n
    pix = (pixels - _PIXEL_CENTRE).long()
    index = (batch[:, None] * Hp + pix[..., 1]) * Wp + pix[..., 0]  # (P, Q) into (B, Hp, Wp)
    total = torch.zeros(B * Hp * Wp, device=device).index_add(0, index.reshape(-1), log_transmittance.reshape(-1))
    # Rescale so that a fully covered pixel is exactly 0 while white stays exactly 1.
    floor = torch.tensor(_MAX_COVERAGE, device=device).neg().log1p().exp()  # same fp32 rounding as pixels
    image = ((total.exp() - floor) / (1.0 - floor)).clamp(min=0.0).view(B, 1, Hp, Wp)[:, :, :H, :W]
    return image.expand(B, 3, H, W)


def band_coverage(d: torch.Tensor, half_width: torch.Tensor) -> torch.Tensor:
    """Fraction of a unit pixel covered by a band of half-width `half_width` whose centre line lies
    at distance `d` from the pixel centre (1-D box filter): exact for axis-aligned strokes."""
    return (torch.clamp(d + half_width, max=0.5) - torch.clamp(d - half_width, min=-0.5)).clamp(min=0.0)


class PolylineDistance(torch.autograd.Function):
    """Distance from pixels to polylines, minimised over each polyline's segments.

    Forward searches all segments without building a graph and keeps the index of the nearest one;
    backward differentiates only that segment's distance. The gradient of d = |p - q| w.r.t. the
    segment end points a, b at the closest point q = a + t (b - a) is (1 - t) u and t u with
    u = (q - p) / d: t's own derivative drops out because q minimises the distance (or t is clamped).
    """

    @staticmethod
    def forward(ctx, polyline, pair_stroke, pixels):
        """polyline: (N, S + 1, 2); pair_stroke: (P,) index into N; pixels: (P, Q, 2). Returns (P, Q)."""
        P, Q, _ = pixels.shape
        S = polyline.shape[1] - 1
        nearest = torch.empty(P, Q, dtype=torch.long, device=pixels.device)
        d2 = torch.empty(P, Q, dtype=pixels.dtype, device=pixels.device)
        for lo, hi, ap, ab, t in _segment_projections(polyline, pair_stroke, pixels):
            d2[lo:hi], nearest[lo:hi] = (ap - t[..., None] * ab[:, None]).square().sum(-1).min(dim=-1)
        start = pair_stroke[:, None] * (S + 1) + nearest  # (P, Q) vertex index of the nearest segment
        ctx.save_for_backward(polyline, pixels, start)
        return d2.sqrt()

    @staticmethod
    def backward(ctx, grad_d):
        polyline, pixels, start = ctx.saved_tensors
        vertices = polyline.reshape(-1, 2)
        a, b = vertices[start], vertices[start + 1]  # (P, Q, 2)
        ab, ap = b - a, pixels - a
        t = ((ap * ab).sum(-1) / (ab * ab).sum(-1).clamp(min=1e-12)).clamp(0.0, 1.0)
        q_minus_p = a + t[..., None] * ab - pixels
        d = q_minus_p.norm(dim=-1, keepdim=True)
        u = torch.where(d > 0, q_minus_p / d.clamp(min=1e-12), 0.0) * grad_d[..., None]
        grad = torch.zeros_like(vertices)
        grad.index_add_(0, start.reshape(-1), ((1 - t)[..., None] * u).reshape(-1, 2))
        grad.index_add_(0, (start + 1).reshape(-1), (t[..., None] * u).reshape(-1, 2))
        return grad.view_as(polyline), None, None


def _tile_pixel_offsets(tile: int, device) -> torch.Tensor:
    """(tile * tile, 2) pixel-centre offsets (x, y) inside one tile, row-major."""
    r = torch.arange(tile, dtype=torch.float32, device=device) + _PIXEL_CENTRE
    y, x = torch.meshgrid(r, r, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], dim=-1)


def _reachable_pairs(polyline, reach, tiles_x: int, tiles_y: int, tile: int):
    """The distinct (stroke, tile) pairs where a stroke may cover a pixel.

    polyline: (N, S + 1, 2) detached; reach: (N,) px beyond which a stroke covers nothing.
    A segment is paired with every tile of its reach-expanded bounding box whose centre lies within
    reach + half a tile diagonal of the segment. Returns pair_stroke (P,), pair_tile (P,) (y * tiles_x + x).
    """
    N, V, _ = polyline.shape
    S = V - 1
    a = polyline[:, :-1].reshape(-1, 2)
    b = polyline[:, 1:].reshape(-1, 2)
    seg_stroke = torch.arange(N, device=polyline.device).repeat_interleave(S)
    r = reach[seg_stroke, None]
    lo = torch.floor((torch.minimum(a, b) - r) / tile).long()
    hi = torch.floor((torch.maximum(a, b) + r) / tile).long()
    limit = torch.tensor([tiles_x - 1, tiles_y - 1], device=polyline.device)
    lo = lo.clamp(min=0)
    hi = torch.minimum(hi, limit)
    extent = (hi - lo + 1).clamp(min=0)  # (M, 2); 0 where the segment is off the canvas
    count = extent[:, 0] * extent[:, 1]

    seg = torch.arange(len(a), device=polyline.device).repeat_interleave(count)
    local = torch.arange(len(seg), device=polyline.device) - (count.cumsum(0) - count).repeat_interleave(count)
    tx = lo[seg, 0] + local % extent[seg, 0]
    ty = lo[seg, 1] + local // extent[seg, 0]

    centre = (torch.stack([tx, ty], dim=-1).float() + 0.5) * tile
    near = _point_segment_distance(centre, a[seg], b[seg]) <= reach[seg_stroke[seg]] + tile * 0.7072
    key = torch.unique(seg_stroke[seg][near] * (tiles_x * tiles_y) + ty[near] * tiles_x + tx[near])
    return key // (tiles_x * tiles_y), key % (tiles_x * tiles_y)


def _point_segment_distance(p, a, b):
    """Distance from points p to segments [a, b]; all (M, 2)."""
    ab, ap = b - a, p - a
    t = ((ap * ab).sum(-1) / (ab * ab).sum(-1).clamp(min=1e-12)).clamp(0.0, 1.0)
    return (ap - t[:, None] * ab).norm(dim=-1)


@_few_cpu_threads
def rasterize_tapered(
    points: torch.Tensor,
    knot_half_widths: torch.Tensor,
    size: tuple[int, int] = (224, 224),
    *,
    segments: int | None = None,
    tile: int = 8,
) -> torch.Tensor:
    """Render black strokes on white whose width varies along each stroke (ink).

    points: (B, n, k, 2) Bézier control points in pixels, as for `rasterize`.
    knot_half_widths: (B, n, m) half-widths in pixels at m >= 2 knots evenly spaced in the curve
        parameter (t = j / (m - 1)); between knots the half-width is linear in t. This is exactly
        Inkscape's PowerStroke with the Linear interpolator and round caps (engine/methods/ink.py
        writes it so), so the optimised ink and the editable SVG are the same shape.

    A pixel's coverage comes from the segment of the polyline whose band edge is nearest (the least
    d - hw(t)), evaluated with `band_coverage` at that segment's own half-width, so a stroke of equal
    knots draws as `rasterize` draws it. The search runs without a graph; only the winning segment is
    differentiated (w.r.t. points and knots), so memory grows with the pixels a stroke touches.
    Returns (B, 3, H, W) in [0, 1].
    """
    B, n, k, _ = points.shape
    H, W = size
    device = points.device
    points = points.float()
    S = segments or default_segments(k)
    polyline = sample_polyline(points, S).reshape(B * n, S + 1, 2)
    knots = knot_half_widths.float().reshape(B * n, -1)
    m = knots.shape[1]
    # Half-width at each polyline vertex (t = i / S): linear between the knots j / (m - 1).
    position = torch.linspace(0.0, m - 1, S + 1, device=device)
    left = position.floor().long().clamp(max=m - 2)
    vertex_hw = torch.lerp(knots[:, left], knots[:, left + 1], position - left)  # (N, S + 1) px

    tiles_x, tiles_y = -(-W // tile), -(-H // tile)
    reach = vertex_hw.detach().amax(dim=1) + 0.5
    pair_stroke, pair_tile = _reachable_pairs(polyline.detach(), reach, tiles_x, tiles_y, tile)
    grid = _tile_pixel_offsets(tile, device)
    origin = torch.stack([pair_tile % tiles_x, pair_tile // tiles_x], dim=-1) * tile
    pixels = origin[:, None, :].float() + grid  # (P, Q, 2) pixel centres

    nearest = _nearest_band_segment(polyline.detach(), vertex_hw.detach(), pair_stroke, pixels)  # (P, Q)
    a = polyline[pair_stroke[:, None], nearest]  # (P, Q, 2)
    ab = polyline[pair_stroke[:, None], nearest + 1] - a
    ap = pixels - a
    t = ((ap * ab).sum(-1) / (ab * ab).sum(-1).clamp(min=1e-12)).clamp(0.0, 1.0)  # (P, Q)
    d = (ap - t[..., None] * ab).square().sum(-1).clamp(min=1e-12).sqrt()
    hw = torch.lerp(vertex_hw[pair_stroke[:, None], nearest], vertex_hw[pair_stroke[:, None], nearest + 1], t)
    log_transmittance = torch.log1p(-band_coverage(d, hw).clamp(max=_MAX_COVERAGE))

    Hp, Wp = tiles_y * tile, tiles_x * tile
    batch = pair_stroke // n
    pix = (pixels - _PIXEL_CENTRE).long()
    index = (batch[:, None] * Hp + pix[..., 1]) * Wp + pix[..., 0]
    total = torch.zeros(B * Hp * Wp, device=device).index_add(0, index.reshape(-1), log_transmittance.reshape(-1))
    floor = torch.tensor(_MAX_COVERAGE, device=device).neg().log1p().exp()
    image = ((total.exp() - floor) / (1.0 - floor)).clamp(min=0.0).view(B, 1, Hp, Wp)[:, :, :H, :W]
    return image.expand(B, 3, H, W)


def _segment_projections(polyline, pair_stroke, pixels):
    """Each pixel projected onto every segment of its pair's stroke, in chunks of pairs sized so that
    a chunk's (p, Q, S, 2) offsets stay within _SEARCH_CHUNK elements.

    polyline: (N, S + 1, 2); pair_stroke: (P,); pixels: (P, Q, 2). Yields (lo, hi, ap, ab, t) for
    pairs lo:hi: ap (p, Q, S, 2) pixel minus segment start, ab (p, S, 2) the segments, t (p, Q, S) the
    projection's parameter clamped to the segment.
    """
    P, Q, _ = pixels.shape
    S = polyline.shape[1] - 1
    step = max(1, _SEARCH_CHUNK // max(1, Q * S))
    for lo in range(0, P, step):
        hi = min(P, lo + step)
        a = polyline[pair_stroke[lo:hi], :-1]  # (p, S, 2)
        ab = polyline[pair_stroke[lo:hi], 1:] - a
        ap = pixels[lo:hi, :, None, :] - a[:, None]  # (p, Q, S, 2)
        t = ((ap * ab[:, None]).sum(-1) / (ab * ab).sum(-1).clamp(min=1e-12)[:, None]).clamp(0.0, 1.0)
        yield lo, hi, ap, ab, t


@torch.no_grad()
def _nearest_band_segment(polyline, vertex_hw, pair_stroke, pixels) -> torch.Tensor:
    """(P, Q) index of the segment whose band edge is nearest each pixel: argmin of d - hw(t).

    polyline: (N, S + 1, 2); vertex_hw: (N, S + 1); pair_stroke: (P,); pixels: (P, Q, 2).
    """
    P, Q, _ = pixels.shape
    nearest = torch.empty(P, Q, dtype=torch.long, device=pixels.device)
    for lo, hi, ap, ab, t in _segment_projections(polyline, pair_stroke, pixels):
        d = (ap - t[..., None] * ab[:, None]).norm(dim=-1)
        w = vertex_hw[pair_stroke[lo:hi]]
        hw = torch.lerp(w[:, None, :-1], w[:, None, 1:], t)
        nearest[lo:hi] = (d - hw).argmin(dim=-1)
    return nearest
