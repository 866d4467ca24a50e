"""The scene matrix as one layered sketch, combined in vector form (docs/method.md#matrix-and-combination).

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

Each stroke is written at the official export's width: the width x its presence in a simplified cell
(the network's confidence shows in the line weight; the fidelity row draws every stroke at full width).
A part's cell that keeps no stroke shows the previous row's strokes of that part, as the official
combination does with an empty SVG.

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


def split_bezier(control: np.ndarray, t) -> tuple[np.ndarray, np.ndarray]:
    """de Casteljau: the pieces of curves (..., k, 2) on [0, t] and [t, 1], each (..., k, 2) of the
    same degree; t a number or one per curve (...,)."""
    t = np.asarray(t, dtype=np.float64)[..., None, None]
    left, right, level = [control[..., 0, :]], [control[..., -1, :]], control
    while level.shape[-2] > 1:
        level = (1 - t) * level[..., :-1, :] + t * level[..., 1:, :]
        left.append(level[..., 0, :])
        right.append(level[..., -1, :])
    return np.stack(left, axis=-2), np.stack(right[::-1], axis=-2)


def sub_curve(control: np.ndarray, t0, t1) -> np.ndarray:
    """Control points (..., k, 2) of the pieces of curves (..., k, 2) between parameters 0 <= t0 < t1."""
    head, _ = split_bezier(control, t1)
    _, piece = split_bezier(head, np.asarray(t0) / t1)
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
    strokes = np.asarray(strokes, dtype=np.float64)
    k = strokes.shape[1]
    polygon = np.linalg.norm(np.diff(strokes, axis=1), axis=-1).sum(axis=1)  # (n,) px, no shorter than the curve
    # Strokes share a sample count per power of two, so each group is sampled in one array.
    counts = 2 ** np.ceil(np.log2(np.maximum(samples, SAMPLES_PER_PX * polygon))).astype(int)
    span_groups, index_groups = [np.zeros((0, 2))], [np.zeros(0, dtype=int)]  # (t0, t1) per piece, its stroke
    for count in np.unique(counts):
        members = np.flatnonzero(counts == count)
        t = np.linspace(0.0, 1.0, count + 1)
        xy = bernstein(t, k) @ strokes[members]  # (g, count + 1, 2)
        kept = inside(xy.reshape(-1, 2)).reshape(len(members), count + 1)
        edges = np.diff(np.pad(kept.astype(np.int8), ((0, 0), (1, 1))), axis=1)
        rows, start = np.nonzero(edges == 1)  # row-major: runs in order, starts and stops paired
        stop = np.nonzero(edges == -1)[1] - 1
        stroke = members[rows]
        t0, t1 = t[start], t[stop]
        cut = start > 0  # the run begins where the curve enters: between samples start - 1 and start
        t0[cut] = _edge(strokes[stroke[cut]], inside, t[start[cut]], t[start[cut] - 1])
        cut = stop < count
        t1[cut] = _edge(strokes[stroke[cut]], inside, t[stop[cut]], t[stop[cut] + 1])
        span_groups.append(np.stack([t0, t1], axis=1))
        index_groups.append(stroke)
    spans, index = np.concatenate(span_groups), np.concatenate(index_groups)
    order = np.lexsort((spans[:, 0], index))  # stroke order, then along each stroke
    (t0, t1), index = spans[order].T, index[order]
    pieces = strokes[index]
    whole = (t0 == 0.0) & (t1 == 1.0)  # wholly inside: unchanged, however short
    cut = ~whole & (t1 > t0)
    pieces[cut] = sub_curve(pieces[cut], t0[cut], t1[cut])
    keep = whole | (cut & (_length(pieces) >= MIN_PIECE))
    return pieces[keep], index[keep]


def _edge(control: np.ndarray, inside: Region, t_in: np.ndarray, t_out: np.ndarray) -> np.ndarray:
    """(m,) parameters on curves (m, k, 2) within 2^-BISECTIONS of where the region ends, inside it;
    t_in (m,) is inside, t_out (m,) outside."""
    for _ in range(BISECTIONS):
        mid = (t_in + t_out) / 2
        ok = inside((bernstein(mid, control.shape[1])[..., None] * control).sum(axis=1))
        t_in, t_out = np.where(ok, mid, t_in), np.where(ok, t_out, mid)
    return t_in


def _length(control: np.ndarray) -> np.ndarray:
    """(m,) arc lengths of curves (m, k, 2), from 33 samples each."""
    xy = bernstein(np.linspace(0.0, 1.0, 33), control.shape[1]) @ control  # (m, 33, 2)
    return np.linalg.norm(np.diff(xy, axis=1), axis=-1).sum(axis=1)


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
    regions = part_regions(canvas_map, mask, width)
    cells: dict[tuple[int, int], StrokeLayer] = {}
    columns = []
    for layer in layers:
        column_cells = []
        for row in rows:
            key, parts, shown = f"fidelity-{layer}-simplicity-{row}", [], 0
            for part in (BACKGROUND, OBJECT):  # the object on top
                result = by_part.get((part, layer))  # None: a part the scene has not (no background)
                points, index, keep = np.zeros((0, k, 2)), np.zeros(0, dtype=int), np.zeros(0)
                presence = np.zeros(0)
                if result is not None:
                    shown_cell = shown_row(result.cells, row)
                    strokes, keep, presence = _scene_strokes(shown_cell, part, canvas_map, frame)
                    points, index = clip_strokes(strokes, regions[part])
                shown += len(np.unique(index))
                parts.append(
                    StrokeLayer(
                        part.capitalize(),
                        points,
                        width=width,
                        color=color,
                        key=f"{key}-{part}",
                        importance=tuple(keep[index].tolist()),  # a cut stroke's pieces share its probability
                        widths=tuple((width * presence[index]).tolist()),
                    )
                )
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


def part_regions(canvas_map: CanvasMap, mask: np.ndarray | None, width: float) -> dict[str, Region]:
    """Where each part may draw, in scene pixels: the photo inset by half the stroke `width`; the
    background also off the object `mask`."""
    photo = inside_rectangle(canvas_map.width, canvas_map.height, width / 2)
    return {OBJECT: photo, BACKGROUND: photo if mask is None else both(photo, off_mask(mask))}


def to_scene(points: np.ndarray, part: str, canvas_map: CanvasMap, frame: ObjectFrame) -> np.ndarray:
    """A part's strokes (n, k, 2) canvas px -> scene px: the object's through its (enlarged) object image."""
    points = canvas_map.to_source(points)
    return frame.to_scene(points) if part == OBJECT else points


def shown_row(cells: list[CellResult], row: int) -> CellResult:
    """The cell a part shows at `row`: its own, or when it keeps no stroke the nearest row above that does."""
    while row > 0 and not bool(cells[row].keep.any()):
        row -= 1
    return cells[row]


def _scene_strokes(
    cell: CellResult, part: str, canvas_map: CanvasMap, frame: ObjectFrame
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The cell's exported strokes (n, k, 2) in scene pixels, unclipped, most important first, their
    keep probabilities (n,) and their presences (n,), the factor of their width."""
    order = ordered(cell)
    points = to_scene(cell.points.numpy().astype(np.float64)[order], part, canvas_map, frame)
    presence = np.ones(len(cell.keep)) if cell.presence is None else cell.presence.numpy().astype(np.float64)
    return points, cell.importance.numpy().astype(np.float64)[order], presence[order]
