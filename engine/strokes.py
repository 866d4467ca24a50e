"""The sketch as data: layers of Bézier strokes in the source image's pixel space.

This is what every method produces and what the SVG writer consumes. Plain numpy, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class StrokeLayer:
    """One layer of a sketch: a level of abstraction, a matrix cell, or a part of one.

    points: (n, k, 2) float, Bézier control points (x, y) in source-image pixels; k = 4 cubic,
        3 quadratic, 2 straight line. Stroke order is drawing order (first = most important).
    width: full stroke width (SVG stroke-width) in source-image pixels.
    widths: (n,) per-stroke full widths overriding `width` (a simplified scene cell draws each stroke
        at its presence x the width); empty: every stroke is `width` wide.
    sublayers: nested layers (e.g. the cells of a scene's fidelity column, and each cell's
        "Background" and "Object"), drawn after `points`, in order: the last is on top.
    key: a short stable name for the SVG layer's id (made unique there); "" derives it from the label.
    importance: (n,) per stroke, how much it matters (higher first; docs/method.md#stroke-importance),
        written on each path as sketchabs:importance; empty: not recorded.
    sources: (n,) per stroke of a refined sketch, the index of the given stroke it refines, -1 for an
        added one (sketchabs:source); empty: not a refine result.
    ink: (n, m) per stroke, full widths in source-image pixels at m knots evenly spaced in the curve
        parameter, linear between (engine/methods/ink.py); None: a pen layer, every stroke `width` wide.
        Written as Inkscape PowerStroke paths.
    """

    label: str
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 4, 2)))
    width: float = 3.0
    color: str = "#000000"
    visible: bool = True
    sublayers: tuple[StrokeLayer, ...] = ()
    key: str = ""
    importance: tuple[float, ...] = ()
    sources: tuple[int, ...] = ()
    widths: tuple[float, ...] = ()
    ink: np.ndarray | None = None


@dataclass(frozen=True)
class Sketch:
    """A whole result: layers over an image of `width` x `height` source pixels."""

    width: int
    height: int
    layers: tuple[StrokeLayer, ...]


def elevate(stroke: np.ndarray, k: int) -> np.ndarray:
    """The same curve (j, 2) with `k` >= j control points (exact Bézier degree elevation)."""
    while len(stroke) < k:
        t = np.arange(1, len(stroke))[:, None] / len(stroke)
        stroke = np.concatenate([stroke[:1], t * stroke[:-1] + (1 - t) * stroke[1:], stroke[-1:]])
    return stroke
