"""Exact (up to supersampling) rendering of round-capped strokes, the ground truth for raster tests.

Every pixel is sampled on a ss x ss grid; a sample is ink when its distance to any curve (a 128-piece
polyline, far finer than the rasteriser's) is below the half-width. Pixel = 1 - inked fraction.
"""

from __future__ import annotations

import torch

from engine.methods.init import random_walk
from engine.render.bezier import sample_polyline


@torch.no_grad()
def supersampled(points: torch.Tensor, half_width: float, size: tuple[int, int], ss: int = 16) -> torch.Tensor:
    """points: (n, k, 2) px. Returns (H, W) in [0, 1].

    A stroke's ink is the union of the capsules around its polyline's pieces, so each piece is tested
    only on the samples of its own bounding box: the cost follows the ink, not a long curve's box.
    """
    H, W = size
    ink = torch.zeros(H * ss, W * ss, dtype=torch.bool)
    limit = torch.tensor([W * ss, H * ss])
    for curve in sample_polyline(points.double(), 128):  # (129, 2)
        for a, b in zip(curve[:-1], curve[1:]):
            lo = ((torch.minimum(a, b) - half_width) * ss).floor().long().clamp(min=0)
            hi = torch.minimum(((torch.maximum(a, b) + half_width) * ss).ceil().long(), limit)
            if (hi <= lo).any():
                continue
            xs = (torch.arange(lo[0], hi[0], dtype=torch.float64) + 0.5) / ss
            ys = (torch.arange(lo[1], hi[1], dtype=torch.float64) + 0.5) / ss
            py, px = torch.meshgrid(ys, xs, indexing="ij")
            ab = b - a
            t = (((px - a[0]) * ab[0] + (py - a[1]) * ab[1]) / ab.dot(ab).clamp(min=1e-12)).clamp(0, 1)
            d2 = (px - a[0] - t * ab[0]) ** 2 + (py - a[1] - t * ab[1]) ** 2
            ink[lo[1] : hi[1], lo[0] : hi[0]] |= d2 < half_width**2
    return 1.0 - ink.view(H, ss, W, ss).float().mean(dim=(1, 3))


def random_strokes(generator: torch.Generator, n: int, k: int = 4, size: int = 224, step: float = 0.025):
    """n strokes like CLIPasso's initialisation: a start point, then a random walk of k - 1 steps of
    up to `step` x size per axis. Returns (n, k, 2)."""
    return random_walk(torch.rand(n, 2, generator=generator) * size, k, step * size, generator)
