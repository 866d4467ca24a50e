"""Bézier curves of any degree evaluated as polylines (differentiable, batched)."""

from __future__ import annotations

import math

import torch


def bernstein_basis(k: int, t: torch.Tensor) -> torch.Tensor:
    """Bernstein polynomials of degree k - 1 at parameters t.

    t: (s,) in [0, 1]. Returns (s, k): row j holds the weights of the k control points at t[j].
    """
    degree = k - 1
    i = torch.arange(k, dtype=t.dtype, device=t.device)
    binom = torch.tensor([math.comb(degree, j) for j in range(k)], dtype=t.dtype, device=t.device)
    t = t[:, None]
    return binom * t**i * (1 - t) ** (degree - i)


def sample_polyline(points: torch.Tensor, segments: int) -> torch.Tensor:
    """Vertices of the polyline that approximates each curve with `segments` equal-parameter pieces.

    points: (..., k, 2) control points. Returns (..., segments + 1, 2); first and last vertices are
    the curve's end points exactly, so round caps sit where the curve ends.
    """
    k = points.shape[-2]
    t = torch.linspace(0.0, 1.0, segments + 1, dtype=points.dtype, device=points.device)
    basis = bernstein_basis(k, t)  # (s + 1, k)
    return torch.einsum("sk,...kd->...sd", basis, points)
