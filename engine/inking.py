"""Ink for a finished job: every stroke layer of its sketch gets a width per control point
(engine/methods/ink.py), optimised on the job's canvas target with the strokes where the job put them.

This runs after the method, on the sketch in the photo's pixels, so it serves object sketches, scenes
and refined sketches alike; the strokes go to the canvas and back through the job's CanvasMap and are
written unchanged, only `StrokeLayer.ink` is added. All layers are optimised in one batch (levels of
fewer strokes padded with strokes parked off the canvas, which draw nothing).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from bridge.params import STYLE_INK
from engine.methods.clipasso import PARKED
from engine.methods.ink import InkParams, optimise_ink
from engine.preprocess import CanvasMap
from engine.progress import ProgressCallback, silent
from engine.runtime import Runtime
from engine.strokes import Sketch, StrokeLayer, elevate


def ink_sketch(
    runtime: Runtime,
    sketch: Sketch,
    target: torch.Tensor,
    cmap: CanvasMap,
    ink: InkParams,
    progress: ProgressCallback = silent,
) -> tuple[Sketch, list[str]]:
    """`sketch` with ink widths on every layer that has strokes, and a note of the loss it changed.

    target: (1, 3, 224, 224) the canvas target `cmap` maps the photo onto."""
    leaves = [layer for layer in _walk(sketch.layers) if len(layer.points)]
    if not leaves:
        return sketch, []
    k = max(layer.points.shape[1] for layer in leaves)
    n = max(len(layer.points) for layer in leaves)
    points = torch.full((len(leaves), n, k, 2), PARKED)  # (K, n, k, 2) canvas px
    drawn = torch.zeros(len(leaves), n, dtype=torch.bool)
    pen = torch.tensor([layer.width / 2 / cmap.scale for layer in leaves])  # (K,) canvas half-widths
    for i, layer in enumerate(leaves):
        canvas = cmap.to_canvas(np.asarray(layer.points, dtype=np.float64))
        points[i, : len(canvas), : canvas.shape[1]] = torch.from_numpy(_elevated(canvas, k))
        drawn[i, : len(canvas)] = True
    result = optimise_ink(runtime, target, points, pen, ink, progress, drawn)
    widths = {  # (n, k) full widths in photo px
        id(layer): 2 * cmap.scale * result.half_widths[i, : len(layer.points)].numpy().astype(np.float64)
        for i, layer in enumerate(leaves)
    }
    note = (
        f"ink: CLIP eval loss {float(result.pen_loss.mean()):.4g} with the pen's widths, "
        f"{float(result.ink_loss.mean()):.4g} with ink (mean of {len(leaves)} layer(s))"
    )
    return dataclasses.replace(sketch, layers=tuple(_with_ink(layer, widths) for layer in sketch.layers)), [note]


def _walk(layers: tuple[StrokeLayer, ...]):
    for layer in layers:
        yield layer
        yield from _walk(layer.sublayers)


def _with_ink(layer: StrokeLayer, widths: dict[int, np.ndarray]) -> StrokeLayer:
    return dataclasses.replace(
        layer, ink=widths.get(id(layer)), sublayers=tuple(_with_ink(sub, widths) for sub in layer.sublayers)
    )


def _elevated(points: np.ndarray, k: int) -> np.ndarray:
    return np.stack([elevate(stroke, k) for stroke in points]) if points.shape[1] < k else points


def ink_if_asked(
    runtime: Runtime,
    style: str,
    sketch: Sketch,
    target: torch.Tensor,
    cmap: CanvasMap,
    cap: int,
    seed: int,
    progress: ProgressCallback = silent,
) -> tuple[Sketch, list[str]]:
    """`ink_sketch` for the ink style (else `sketch` as it is), taking at most `cap` steps (0: no cap):
    a quick run asked for few iterations of the strokes gets as few of the widths."""
    if style != STYLE_INK:
        return sketch, []
    ink = InkParams(iterations=min(InkParams.iterations, cap) if cap else InkParams.iterations, seed=seed)
    return ink_sketch(runtime, sketch, target, cmap, ink, progress)
