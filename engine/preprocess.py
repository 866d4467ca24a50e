"""Photo -> the square canvas the methods optimise on (224 x 224), and the map back to the photo.

Non-square photos are padded with white to a centred square, never distorted or cropped: the
official code stretches them to 224 x 224, which distorts the subject; cropping would cut it.
Padding keeps the whole subject undistorted, and the map back to the photo is a plain scale and
shift, so the final sketch overlays the photo exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

CANVAS = 224


@dataclass(frozen=True)
class CanvasMap:
    """Maps canvas pixels to the pixels of a `width` x `height` photo padded to a centred square.

    Coordinates are continuous (x, y): pixel i covers [i, i + 1) in both spaces, so the canvas
    square [0, canvas]^2 maps exactly onto the padded square, whose top-left corner lies at
    -offset in photo pixels.
    """

    width: int
    height: int
    canvas: int = CANVAS

    @property
    def side(self) -> int:
        """Side of the padded square, in photo pixels."""
        return max(self.width, self.height)

    @property
    def scale(self) -> float:
        """Photo pixels per canvas pixel."""
        return self.side / self.canvas

    @property
    def offset(self) -> tuple[int, int]:
        """(x, y) position of the photo inside the padded square, in photo pixels.

        Whole pixels, so the photo is pasted without resampling; when the padding is odd the extra
        pixel goes right / bottom.
        """
        return (self.side - self.width) // 2, (self.side - self.height) // 2

    def to_source(self, points: np.ndarray) -> np.ndarray:
        """Canvas (..., 2) x, y -> photo pixels (..., 2)."""
        return np.asarray(points, dtype=np.float64) * self.scale - np.asarray(self.offset)

    def to_canvas(self, points: np.ndarray) -> np.ndarray:
        """Photo pixels (..., 2) x, y -> canvas (..., 2); the inverse of `to_source`."""
        return (np.asarray(points, dtype=np.float64) + np.asarray(self.offset)) / self.scale


def prepare_target(image: Image.Image, mask: np.ndarray | None, canvas: int = CANVAS) -> tuple[torch.Tensor, CanvasMap]:
    """The target the sketch is optimised towards: float (1, 3, canvas, canvas) in [0, 1].

    With a mask (bool (H, W), True on the object) background pixels become white first, as in the
    paper. The photo is then padded with white to a centred square (not distorted as in the official
    code, nor cropped; see the module docstring) and resized bicubic to canvas x canvas.
    """
    if image.mode != "RGB":
        raise ValueError(f"prepare_target needs an RGB image (use load_image), got {image.mode}")
    white = (255, 255, 255)
    if mask is not None:
        _check_mask_fits(mask, image.size)
        keep = Image.fromarray(np.asarray(mask, dtype=bool))  # mode "1"
        image = Image.composite(image, Image.new("RGB", image.size, white), keep)
    cmap = CanvasMap(image.width, image.height, canvas)
    square = _pad_square(image, cmap, white)
    small = square.resize((canvas, canvas), Image.Resampling.BICUBIC)  # PIL clamps the overshoot
    pixels = np.asarray(small, dtype=np.float32) / 255  # (canvas, canvas, 3)
    return torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0).contiguous(), cmap


def _pad_square(image: Image.Image, cmap: CanvasMap, fill) -> Image.Image:
    """`image` pasted at `cmap.offset` on a `cmap.side` square filled with `fill`."""
    square = Image.new(image.mode, (cmap.side, cmap.side), fill)
    square.paste(image, cmap.offset)
    return square


def _check_mask_fits(mask: np.ndarray, size: tuple[int, int]) -> None:
    """A mask of the wrong size is a caller bug: `load_mask` and `auto_mask` fit it to the photo."""
    if mask.shape != (size[1], size[0]):
        raise ValueError(f"mask shape {mask.shape} does not match the image (h, w) {size[::-1]}")
