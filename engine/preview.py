"""PNG previews: every level of a sketch drawn over a faded copy of the photo, side by side."""

from __future__ import annotations

import io
import os

import numpy as np
import torch
from PIL import Image, ImageDraw

from bridge.atomic import write_atomic
from engine.io.image import load_image
from engine.render import rasterize
from engine.strokes import Sketch, StrokeLayer

PANEL = 384  # longest side of one panel, px
PHOTO_OPACITY = 0.25


def render_layer(layer: StrokeLayer, size: tuple[int, int], scale: float) -> np.ndarray:
    """(H, W) ink image in [0, 1] (1 = white) of a layer's strokes, drawn at `scale` x photo px."""
    if len(layer.points) == 0:
        return np.ones(size[::-1])
    points = torch.as_tensor(layer.points, dtype=torch.float32)[None] * scale
    with torch.no_grad():
        return rasterize(points, layer.width * scale / 2, (size[1], size[0]))[0, 0].numpy()


def preview_png(image_source, sketch: Sketch) -> bytes:
    scale = PANEL / max(sketch.width, sketch.height)
    size = (max(1, round(sketch.width * scale)), max(1, round(sketch.height * scale)))
    photo = np.asarray(load_image(image_source).resize(size, Image.BICUBIC), dtype=np.float64) / 255
    faded = 1 - PHOTO_OPACITY * (1 - photo)
    label_h = 20
    sheet = Image.new("RGB", (size[0] * len(sketch.layers), size[1] + label_h), "white")
    draw = ImageDraw.Draw(sheet)
    for i, layer in enumerate(sketch.layers):
        ink = render_layer(layer, size, scale)[..., None]
        panel = (faded * ink * 255).round().astype(np.uint8)
        sheet.paste(Image.fromarray(panel), (i * size[0], label_h))
        draw.text((i * size[0] + 6, 4), layer.label, fill="black")
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return buffer.getvalue()


def write_preview(path: str | os.PathLike, image_source, sketch: Sketch) -> None:
    write_atomic(path, preview_png(image_source, sketch))
