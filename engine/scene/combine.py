"""The scene matrix as one layered sketch, combined in vector form (docs/method.md#matrix-and-combination).

Object strokes are mapped back to the scene's pixels (canvas -> object image -> scene); background
strokes are clipped where they cross the object mask: each stroke is cut into its sub-curves outside
the mask (exact Bézier pieces of the same degree, so every piece is still one editable `<path>`),
and strokes wholly inside it are dropped. The official code does this on rasters instead (erasing
background ink under the mask at 448 px), which leaves no editable strokes.
"""

from __future__ import annotations

import math

import numpy as np

from engine.methods.clipascene import BACKGROUND, OBJECT, CellResult, SceneRun
from engine.preprocess import CanvasMap
from engine.scene.split import ObjectFrame
from engine.strokes import Sketch, StrokeLayer

CLIP_SAMPLES = 128  # points per stroke tested against the mask


def bezier_points(control: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(k, 2) control points evaluated at parameters t (s,) -> (s, 2)."""
    k = len(control)
    basis = np.stack([math.comb(k - 1, i) * t**i * (1 - t) ** (k - 1 - i) for i in range(k)], axis=1)
    return basis @ control


def split_bezier(control: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
    """de Casteljau: the curve's pieces on [0, t] and [t, 1], each (k, 2) of the same degree."""
    left, right, level = [control[0]], [control[-1]], control
    while len(level) > 1:
        level = (1 - t) * level[:-1] + t * level[1:]
        left.append(level[0])
        right.append(level[-1])
    return np.array(left), np.array(right[::-1])


def sub_curve(control: np.ndarray, t0: float, t1: float) -> np.ndarray:
    """(k, 2) control points of the piece of the curve between parameters t0 < t1."""
    head, _ = split_bezier(control, t1)
    _, piece = split_bezier(head, t0 / t1)
    return piece


def clip_outside(strokes: np.ndarray, mask: np.ndarray, samples: int = CLIP_SAMPLES) -> tuple[np.ndarray, np.ndarray]:
    """The parts of strokes (n, k, 2) in mask pixels that lie outside `mask` (H, W) bool.

    Returns (pieces (m, k, 2), index (m,) of the stroke each piece comes from), in stroke order.
    A stroke wholly outside is returned unchanged; points off the image count as outside.
    """
    t = np.linspace(0.0, 1.0, samples + 1)
    height, width = mask.shape
    pieces, index = [], []
    for i, control in enumerate(strokes):
        xy = bezier_points(control, t)
        col, row = np.floor(xy[:, 0]).astype(int), np.floor(xy[:, 1]).astype(int)
        on_image = (col >= 0) & (col < width) & (row >= 0) & (row < height)
        inside = np.zeros(len(t), dtype=bool)
        inside[on_image] = mask[row[on_image], col[on_image]]
        if not inside.any():
            pieces.append(control)
            index.append(i)
            continue
        # Runs of consecutive outside samples; a run of one sample has no length and is dropped.
        edges = np.diff(np.concatenate([[0], (~inside).astype(np.int8), [0]]))
        for start, stop in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1):
            if stop > start:
                pieces.append(sub_curve(control, t[start], t[stop]))
                index.append(i)
    k = strokes.shape[1] if strokes.ndim == 3 else 4
    return np.array(pieces, dtype=np.float64).reshape(-1, k, 2), np.array(index, dtype=int)


def ordered(cell: CellResult) -> np.ndarray:
    """Indices of the cell's exported strokes, most important (highest keep probability) first."""
    kept = np.flatnonzero(cell.keep.numpy())
    importance = cell.importance.numpy()[kept]
    return kept[np.argsort(-importance, kind="stable")]


def cell_label(layer: int, row: int, levels: int) -> str:
    return f"Fidelity {layer} - Simplicity {row}/{levels}"


def matrix_sketch(
    run: SceneRun,
    canvas_map: CanvasMap,
    frame: ObjectFrame,
    mask: np.ndarray | None,
    rows: tuple[int, ...],
    levels: int,
    width: float,
    color: str,
) -> tuple[Sketch, dict[tuple[int, int], StrokeLayer]]:
    """One layer per matrix cell (layer x row), each with "Object" and "Background" sublayers, in
    the scene's pixels; only the first cell visible. Also returns the cells by (layer, row)."""
    by_part = {(c.part, c.layer): c for c in run.columns}
    layers = list(dict.fromkeys(c.layer for c in run.columns))
    k = run.columns[0].cells[0].points.shape[1]
    empty = np.zeros((0, k, 2))
    cells: dict[tuple[int, int], StrokeLayer] = {}
    for layer in layers:
        for row in rows:
            parts = []
            for part in (OBJECT, BACKGROUND):
                column = by_part.get((part, layer))
                points = empty if column is None else _scene_strokes(column.cells[row], part, canvas_map, frame, mask)
                parts.append(StrokeLayer(label=part.capitalize(), points=points, width=width, color=color))
            cells[(layer, row)] = StrokeLayer(
                label=cell_label(layer, row, levels),
                points=empty,
                width=width,
                color=color,
                visible=not cells,
                sublayers=tuple(parts),
            )
    return Sketch(canvas_map.width, canvas_map.height, tuple(cells.values())), cells


def _scene_strokes(
    cell: CellResult, part: str, canvas_map: CanvasMap, frame: ObjectFrame, mask: np.ndarray | None
) -> np.ndarray:
    """The cell's exported strokes (m, k, 2) in scene pixels, most important first."""
    points = canvas_map.to_source(cell.points.numpy().astype(np.float64)[ordered(cell)])
    if part == OBJECT:
        return frame.to_scene(points)
    if mask is None:
        return points
    pieces, _ = clip_outside(points, mask)
    return pieces
