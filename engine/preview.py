"""PNG previews: sketches drawn over a faded copy of the photo, in a grid of labelled panels.

An object sketch is one row, a panel per level; a scene matrix is laid out as the paper shows it:
a column per fidelity layer, a row per simplicity level.
"""

from __future__ import annotations

import io
import os

import numpy as np
import torch
from PIL import Image, ImageDraw

from bridge.atomic import write_atomic
from engine.io.image import load_image
from engine.render import rasterize, rasterize_tapered
from engine.strokes import Sketch, StrokeLayer

PANEL = 384  # longest side of one panel of an object sketch's preview, px
LIVE_PANEL = 256  # longest side of a live preview in progress messages (tens of KB)
MATRIX_PANEL = 160  # the same in a scene matrix's preview (3 x 9 panels by default, 480 x 1746 px)
PHOTO_OPACITY = 0.25
LINE = 14  # px per label line, above each panel
MARGIN = 6  # px of label strip besides its lines


def render_layer(layer: StrokeLayer, size: tuple[int, int], scale: float) -> np.ndarray:
    """(H, W) ink image in [0, 1] (1 = white) of a layer's strokes and all its sublayers', drawn at
    `scale` x photo px into `size` (W, H); an ink layer with its widths along each stroke."""
    ink = np.ones(size[::-1])
    if len(layer.points):
        points = torch.as_tensor(layer.points, dtype=torch.float32)[None] * scale
        half: float | torch.Tensor = layer.width * scale / 2  # or per stroke (1, n), as the SVG draws them
        if layer.widths:
            half = torch.tensor(layer.widths, dtype=torch.float32)[None] * (scale / 2)
        with torch.no_grad():
            if layer.ink is not None:  # (1, n, m) knot half-widths, as the PowerStroke paths draw them
                knots = torch.as_tensor(layer.ink, dtype=torch.float32)[None] * scale / 2
                drawn = rasterize_tapered(points, knots, (size[1], size[0]))
            else:
                drawn = rasterize(points, half, (size[1], size[0]))
            ink = drawn[0, 0].numpy().astype(np.float64)
    for sublayer in layer.sublayers:
        ink = ink * render_layer(sublayer, size, scale)  # black over black: coverages combine as "over"
    return ink


def contact_sheet(
    image_source, width: int, height: int, grid: list[list[tuple[str, StrokeLayer]]], panel: int
) -> bytes:
    """PNG of grid[row][column] = (label, layer): each layer over the faded `width` x `height` photo
    in a panel whose longest side is `panel` px, under its label (lines split at "\\n")."""
    scale = panel / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    photo = np.asarray(load_image(image_source).resize(size, Image.Resampling.BICUBIC), dtype=np.float64) / 255
    faded = 1 - PHOTO_OPACITY * (1 - photo)  # (h, w, 3)
    label_h = MARGIN + LINE * max(label.count("\n") + 1 for row in grid for label, _ in row)
    columns = max(len(row) for row in grid)
    sheet = Image.new("RGB", (size[0] * columns, (size[1] + label_h) * len(grid)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(grid):
        top = r * (size[1] + label_h)
        for c, (label, layer) in enumerate(row):
            ink = render_layer(layer, size, scale)[..., None]
            sheet.paste(Image.fromarray((faded * ink * 255).round().astype(np.uint8)), (c * size[0], top + label_h))
            for i, line in enumerate(label.split("\n")):
                draw.text((c * size[0] + MARGIN, top + MARGIN // 2 + i * LINE), line, fill="black")
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def preview_png(image_source, sketch: Sketch) -> bytes:
    """An object sketch's levels side by side."""
    row = [(layer.label, layer) for layer in sketch.layers]
    return contact_sheet(image_source, sketch.width, sketch.height, [row], PANEL)


def matrix_preview_png(image_source, sketch: Sketch) -> bytes:
    """A scene matrix (engine.scene.combine.matrix_sketch's layers: fidelity columns holding their
    cells): a column per fidelity layer, a row per simplicity level, each cell labelled with both."""
    columns = [[(f"{column.label}\n{cell.label}", cell) for cell in column.sublayers] for column in sketch.layers]
    rows = [list(row) for row in zip(*columns)]
    return contact_sheet(image_source, sketch.width, sketch.height, rows, MATRIX_PANEL)


class LivePreview:
    """Small PNGs of a sketch in progress over the faded photo, for progress messages: the photo is
    read and faded once, each call draws only the strokes."""

    def __init__(self, image, panel: int = LIVE_PANEL):
        self.scale = panel / max(image.width, image.height)
        self.size = (max(1, round(image.width * self.scale)), max(1, round(image.height * self.scale)))
        photo = np.asarray(image.convert("RGB").resize(self.size, Image.Resampling.BICUBIC), dtype=np.float64) / 255
        self.faded = 1 - PHOTO_OPACITY * (1 - photo)  # (h, w, 3)

    def png(self, layer: StrokeLayer) -> bytes:
        ink = render_layer(layer, self.size, self.scale)[..., None]
        buffer = io.BytesIO()
        Image.fromarray((self.faded * ink * 255).round().astype(np.uint8)).save(buffer, format="PNG")
        return buffer.getvalue()


def write_preview(path: str | os.PathLike, image_source, sketch: Sketch) -> None:
    write_atomic(path, preview_png(image_source, sketch))
