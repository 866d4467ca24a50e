"""Ink strokes as Inkscape's PowerStroke path effect: the effect's parameters and the outline it draws.

An ink stroke is a Bézier centre line (n = k control points) with m half-widths at knots evenly
spaced in the curve parameter, linear between them, round at both ends. Inkscape 1.2 draws exactly
that with PowerStroke's Linear interpolator and round caps, from `inkscape:original-d` (the centre
line, editable with the node tool) and the effect's `offset_points` ("t,half-width | ..."; editable
with PowerStroke's knots). Inkscape stores its drawing in `d` and does not recompute it when it
opens a file, so `d` here is our own outline of the same shape: what Inkscape shows until the path is
edited, and what any other viewer shows. tests/test_ink.py compares it with Inkscape's recomputed one.
"""

from __future__ import annotations

import numpy as np

from engine.strokes import elevate

# Inkscape 1.2's PowerStroke attributes (read from an effect Inkscape wrote); offset_points is per path.
POWERSTROKE = {
    "effect": "powerstroke",
    "is_visible": "true",
    "lpeversion": "1",
    "sort_points": "true",
    "interpolator_type": "Linear",
    "interpolator_beta": "0.2",
    "start_linecap_type": "round",
    "linejoin_type": "round",
    "miter_limit": "4",
    "end_linecap_type": "round",
    "scale_width": "1",
    "not_jump": "false",
}
SAMPLES = 48  # centre-line samples per outline side: within ~0.1 px of the curve at sketch sizes
_CAP = 8  # pieces per round cap


def offset_points(half_widths: np.ndarray, fmt) -> str:
    """PowerStroke's `offset_points` for (m,) knot half-widths: "t,w | ..." at t = j / (m - 1)."""
    m = len(half_widths)
    return " | ".join(f"{j / (m - 1):.6g},{fmt(w)}" for j, w in enumerate(half_widths))


def half_width_at(half_widths: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(s,) half-widths at curve parameters t (s,), linear between the (m,) knots."""
    return np.interp(t, np.linspace(0.0, 1.0, len(half_widths)), half_widths)


def outline(points: np.ndarray, half_widths: np.ndarray) -> np.ndarray:
    """(2 * (SAMPLES + 1) + 2 * (_CAP - 1), 2) the closed outline of one ink stroke: left side, end
    cap, right side back, start cap. points: (k, 2) Bézier control points; half_widths: (m,)."""
    cubic = elevate(np.asarray(points, dtype=float), 4)
    t = np.linspace(0.0, 1.0, SAMPLES + 1)[:, None]
    basis = np.hstack([(1 - t) ** 3, 3 * t * (1 - t) ** 2, 3 * t**2 * (1 - t), t**3])
    centre = basis @ cubic  # (s, 2)
    derivative = np.hstack([(1 - t) ** 2, 2 * t * (1 - t), t**2]) @ np.diff(cubic, axis=0)  # (s, 2) / 3
    tangent = _unit(derivative)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    w = half_width_at(np.asarray(half_widths, dtype=float), t[:, 0])[:, None]
    left, right = centre + w * normal, centre - w * normal
    return np.concatenate(
        [
            left,
            _cap(centre[-1], tangent[-1], w[-1, 0], +1)[1:-1],
            right[::-1],
            _cap(centre[0], tangent[0], w[0, 0], -1)[1:-1],
        ]
    )


def outline_d(points: np.ndarray, half_widths: np.ndarray, fmt) -> str:
    """SVG path data of `outline`: one closed polygon (fill it, nonzero)."""
    vertices = outline(points, half_widths)
    head, *rest = (f"{fmt(x)} {fmt(y)}" for x, y in vertices)
    return f"M {head} L {' '.join(rest)} Z"


def _unit(chord: np.ndarray) -> np.ndarray:
    """(s, 2) unit tangents from derivatives (s, 2); where one vanishes (a cusp, or a control point on
    an end point), the previous sample's direction (the next one's at the start); a dot points along x."""
    length = np.linalg.norm(chord, axis=1)
    good = length > 1e-9
    if not good.any():
        return np.tile([1.0, 0.0], (len(chord), 1))
    index = np.where(good, np.arange(len(chord)), 0)
    index = np.maximum.accumulate(index)
    index[: np.argmax(good)] = np.argmax(good)
    return chord[index] / length[index, None]


def _cap(tip: np.ndarray, tangent: np.ndarray, w: float, direction: int) -> np.ndarray:
    """(_CAP + 1, 2) a half circle of radius w round `tip`, from the left side to the right side,
    bulging along `direction` x tangent (+1 at the end, -1 at the start)."""
    normal = np.array([-tangent[1], tangent[0]])
    angle = np.linspace(0.0, np.pi, _CAP + 1)[:, None]
    if direction > 0:
        return tip + w * (np.cos(angle) * normal + np.sin(angle) * tangent)
    return tip + w * (-np.cos(angle) * normal - np.sin(angle) * tangent)
