"""The scene matrix as one layered sketch, combined in vector form (SPEC 3.5).

Object strokes are mapped back to the scene's pixels (canvas -> object image -> scene). Every stroke
is then clipped to the region its part may draw in: each is cut into its sub-curves inside the
region (exact Bézier pieces of the same degree, so every piece is still one editable `<path>`), and
strokes wholly outside are dropped.
- Both parts stay inside the photo's rectangle, inset by half the stroke width, so no ink (round caps
  included) lies outside the image a designer placed. The optimisation draws on a padded square
  canvas, and strokes can wander off it, so without this they would run past the photo's edges.
- Background strokes also stay off the object mask (the centre line stops at the mask's edge); the
  Object sublayer is drawn on top. The official code erases background ink under the mask on a
  448 px raster instead, which leaves no editable strokes.

The SVG: one layer per fidelity column, holding one layer per simplicity row (a cell), each with
"Background" then "Object" sublayers (the last is drawn on top and listed first in Inkscape's Layers
panel). One cell is visible; the column layers all are, so showing another cell takes one click.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from engine.methods.clipascene import BACKGROUND, OBJECT, CellResult, SceneRun
from engine.preprocess import CanvasMap
from engine.scene.split import ObjectFrame
from engine.strokes import Sketch, StrokeLayer

CLIP_SAMPLES = 128  # fewest points per stroke tested against the region ...
SAMPLES_PER_PX = 2  # ... and at least this many per pixel of its control polygon (the curve is no longer)
BISECTIONS = 30  # each cut is placed at the region's edge to 2^-30 of a sample step
MIN_PIECE = 1.0  # px: a cut-off piece shorter than this is a dot a designer would only delete

Region = Callable[[np.ndarray], np.ndarray]  # points (s, 2) px -> (s,) bool: inside the kept region


def bernstein(t: np.ndarray, k: int) -> np.ndarray:
    """(s, k) weights of k control points at parameters t (s,)."""
    return np.stack([math.comb(k - 1, i) * t**i * (1 - t) ** (k - 1 - i) for i in range(k)], axis=1)


def bezier_points(control: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(k, 2) control points evaluated at parameters t (s,) -> (s, 2)."""
    return bernstein(t, len(control)) @ control


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


def inside_rectangle(width: float, height: float, margin: float = 0.0) -> Region:
    """The rectangle [margin, width - margin] x [margin, height - margin], edges included."""

    def inside(xy: np.ndarray) -> np.ndarray:
        x, y = xy[:, 0], xy[:, 1]
        return (x >= margin) & (x <= width - margin) & (y >= margin) & (y <= height - margin)

    return inside


def off_mask(mask: np.ndarray) -> Region:
    """Points not on a pixel of `mask` (H, W) bool; points off the image are off the mask."""
    height, width = mask.shape

    def inside(xy: np.ndarray) -> np.ndarray:
        col, row = np.floor(xy[:, 0]), np.floor(xy[:, 1])
        on_image = (col >= 0) & (col < width) & (row >= 0) & (row < height)
        on_mask = np.zeros(len(xy), dtype=bool)
        on_mask[on_image] = mask[row[on_image].astype(int), col[on_image].astype(int)]
        return ~on_mask

    return inside


def both(first: Region, second: Region) -> Region:
    return lambda xy: first(xy) & second(xy)


def clip_strokes(strokes: np.ndarray, inside: Region, samples: int = CLIP_SAMPLES) -> tuple[np.ndarray, np.ndarray]:
    """The parts of strokes (n, k, 2) px that lie inside a region.

    Returns (pieces (m, k, 2), index (m,) of the stroke each piece comes from), in stroke order. A
    stroke wholly inside is returned unchanged. Each stroke is sampled densely (SAMPLES_PER_PX); a
    piece runs between the parameters where the samples enter and leave the region, each refined by
    bisection to the region's edge from the inside, so its ends are inside and exact.
    """
    k = strokes.shape[1]
    spans, index, cuts = [], [], []  # (t0, t1) per piece, its stroke; cuts: (piece, end, t inside, t outside)
    for i, control in enumerate(strokes):
        polygon = np.linalg.norm(np.diff(control, axis=0), axis=1).sum()
        t = np.linspace(0.0, 1.0, max(samples, math.ceil(SAMPLES_PER_PX * polygon)) + 1)
        kept = inside(bezier_points(control, t))
        edges = np.diff(np.concatenate([[0], kept.astype(np.int8), [0]]))
        for start, stop in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1):
            if start > 0:
                cuts.append((len(spans), 0, t[start], t[start - 1]))
            if stop < len(t) - 1:
                cuts.append((len(spans), 1, t[stop], t[stop + 1]))
            spans.append([t[start], t[stop]])
            index.append(i)
    spans, index = np.array(spans, dtype=np.float64).reshape(-1, 2), np.array(index, dtype=int)
    if cuts:
        piece, end, t_in, t_out = (np.array(column) for column in zip(*cuts))
        piece, end = piece.astype(int), end.astype(int)
        spans[piece, end] = _edge(strokes[index[piece]], inside, t_in, t_out)
    pieces, kept_index = [], []
    for (t0, t1), i in zip(spans, index):
        if t0 == 0.0 and t1 == 1.0:  # wholly inside: unchanged, however short
            pieces.append(strokes[i])
        elif t1 > t0 and _length(piece := sub_curve(strokes[i], t0, t1)) >= MIN_PIECE:
            pieces.append(piece)
        else:
            continue
        kept_index.append(i)
    return np.array(pieces, dtype=np.float64).reshape(-1, k, 2), np.array(kept_index, dtype=int)


def _edge(control: np.ndarray, inside: Region, t_in: np.ndarray, t_out: np.ndarray) -> np.ndarray:
    """(m,) parameters on curves (m, k, 2) within 2^-BISECTIONS of where the region ends, inside it;
    t_in (m,) is inside, t_out (m,) outside."""
    for _ in range(BISECTIONS):
        mid = (t_in + t_out) / 2
        ok = inside(np.einsum("mk,mkd->md", bernstein(mid, control.shape[1]), control))
        t_in, t_out = np.where(ok, mid, t_in), np.where(ok, t_out, mid)
    return t_in


def _length(control: np.ndarray) -> float:
    """Arc length of a curve (k, 2), from 33 samples."""
    xy = bezier_points(control, np.linspace(0.0, 1.0, 33))
    return float(np.linalg.norm(np.diff(xy, axis=0), axis=1).sum())


def ordered(cell: CellResult) -> np.ndarray:
    """Indices of the cell's exported strokes, most important (highest keep probability) first."""
    kept = np.flatnonzero(cell.keep.numpy())
    importance = cell.importance.numpy()[kept]
    return kept[np.argsort(-importance, kind="stable")]


def column_label(layer: int) -> str:
    return f"Fidelity {layer} (ViT layer {layer})"


def cell_label(row: int, levels: int, strokes: int) -> str:
    return f"Simplicity {row}/{levels} - {strokes} stroke{'' if strokes == 1 else 's'}"


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
    """The matrix in the scene's pixels: one layer per fidelity column, holding one layer per row
    (cell) with "Background" and "Object" sublayers; only the first cell visible. Also returns the
    cells by (layer, row).

    A cell's label counts the method's strokes that show in it: a stroke cut in two by the mask
    counts once, one wholly off the photo (or, for the background, under the object) not at all.
    """
    by_part = {(c.part, c.layer): c for c in run.columns}
    layers = list(dict.fromkeys(c.layer for c in run.columns))
    k = run.columns[0].cells[0].points.shape[1]
    photo = inside_rectangle(canvas_map.width, canvas_map.height, width / 2)
    regions = {OBJECT: photo, BACKGROUND: photo if mask is None else both(photo, off_mask(mask))}
    cells: dict[tuple[int, int], StrokeLayer] = {}
    columns = []
    for layer in layers:
        column_cells = []
        for row in rows:
            key, parts, shown = f"fidelity-{layer}-simplicity-{row}", [], 0
            for part in (BACKGROUND, OBJECT):  # the object on top
                column = by_part.get((part, layer))
                points, index = np.zeros((0, k, 2)), np.zeros(0, dtype=int)
                if column is not None:
                    points, index = clip_strokes(
                        _scene_strokes(column.cells[row], part, canvas_map, frame), regions[part]
                    )
                shown += len(np.unique(index))
                parts.append(StrokeLayer(part.capitalize(), points, width=width, color=color, key=f"{key}-{part}"))
            cell = StrokeLayer(
                cell_label(row, levels, shown),
                width=width,
                color=color,
                visible=not cells,
                sublayers=tuple(parts),
                key=key,
            )
            cells[(layer, row)] = cell
            column_cells.append(cell)
        columns.append(
            StrokeLayer(
                column_label(layer), width=width, color=color, sublayers=tuple(column_cells), key=f"fidelity-{layer}"
            )
        )
    return Sketch(canvas_map.width, canvas_map.height, tuple(columns)), cells


def _scene_strokes(cell: CellResult, part: str, canvas_map: CanvasMap, frame: ObjectFrame) -> np.ndarray:
    """The cell's exported strokes (n, k, 2) in scene pixels, unclipped, most important first."""
    points = canvas_map.to_source(cell.points.numpy().astype(np.float64)[ordered(cell)])
    return frame.to_scene(points) if part == OBJECT else points
