"""Draws the test images in this folder: `python -m tests.data.draw` writes them again.

Small, deterministic, made here (MIT, like the code): photo-like gradients with clear edges, so
that saliency and the XDoG edge map have something to find, without shipping anyone's photos.
tests/test_data.py checks that the committed files are exactly what this script draws.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent


def _gradient(size: tuple[int, int], top: tuple[int, int, int], bottom: tuple[int, int, int]) -> Image.Image:
    """A vertical colour gradient, like soft studio light or a sky."""
    w, h = size
    t = np.linspace(0.0, 1.0, h)[:, None, None]
    rows = (1 - t) * np.array(top, float) + t * np.array(bottom, float)
    return Image.fromarray(np.repeat(rows, w, axis=1).round().astype(np.uint8), "RGB")


def animal() -> Image.Image:
    """248 x 248 RGB: a dark four-legged animal on a light backdrop (an object photo)."""
    image = _gradient((248, 248), (236, 232, 222), (205, 198, 184))
    draw = ImageDraw.Draw(image)
    draw.ellipse((20, 200, 230, 236), fill=(182, 174, 160))  # ground shadow
    body = (92, 70, 52)
    draw.ellipse((50, 95, 185, 165), fill=body)
    draw.polygon([(165, 110), (200, 60), (215, 68), (188, 125)], fill=body)  # neck
    draw.ellipse((192, 45, 232, 78), fill=body)  # head
    draw.polygon([(205, 50), (210, 30), (217, 50)], fill=body)  # ear
    for x in (62, 88, 140, 165):
        draw.rectangle((x, 150, x + 12, 215), fill=body)
    draw.line([(52, 115), (25, 150), (22, 175)], fill=body, width=6)  # tail
    draw.ellipse((210, 55, 216, 61), fill=(20, 16, 12))  # eye
    draw.arc((70, 100, 170, 150), 200, 330, fill=(140, 112, 88), width=4)  # light on the back
    return image.filter(ImageFilter.GaussianBlur(0.7))


def vase() -> Image.Image:
    """240 x 240 RGB: a blue vase with three flowers on a warm wall (a second object photo)."""
    image = _gradient((240, 240), (244, 226, 200), (226, 196, 160))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 190, 240, 240), fill=(150, 110, 80))  # table
    draw.line([(0, 190), (240, 190)], fill=(110, 78, 52), width=3)
    for top, colour in (((70, 30), (214, 60, 70)), ((120, 18), (240, 190, 40)), ((165, 40), (200, 80, 170))):
        draw.line([(120, 120), top], fill=(60, 120, 50), width=4)
        x, y = top
        draw.ellipse((x - 16, y - 16, x + 16, y + 16), fill=colour)
        draw.ellipse((x - 5, y - 5, x + 5, y + 5), fill=(90, 60, 20))
    draw.polygon([(95, 110), (145, 110), (165, 160), (150, 200), (90, 200), (75, 160)], fill=(40, 80, 150))
    draw.ellipse((93, 102, 147, 118), fill=(30, 60, 120))  # the vase's mouth
    draw.line([(100, 130), (90, 175)], fill=(110, 150, 210), width=5)  # highlight
    return image.filter(ImageFilter.GaussianBlur(0.6))


def bird() -> Image.Image:
    """300 x 300 RGBA: a pink wading bird on transparency (an object cut out of its photo)."""
    image = Image.new("RGBA", (300, 300), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    pink, dark = (236, 120, 150, 255), (60, 30, 40, 255)
    draw.ellipse((90, 110, 210, 175), fill=pink)  # body
    draw.line([(190, 130), (215, 80), (205, 45)], fill=pink, width=12)  # neck
    draw.ellipse((192, 28, 226, 56), fill=pink)  # head
    draw.polygon([(222, 38), (250, 52), (221, 50)], fill=dark)  # beak
    draw.line([(140, 170), (135, 270)], fill=(200, 90, 120, 255), width=5)  # legs
    draw.line([(160, 170), (175, 265)], fill=(200, 90, 120, 255), width=5)
    draw.polygon([(95, 125), (60, 110), (100, 150)], fill=(210, 90, 120, 255))  # tail feathers
    return image


def field() -> tuple[Image.Image, Image.Image]:
    """320 x 240 RGB scene (sky, hills, a tree, a fence) and its object mask (the tree: white)."""
    image = _gradient((320, 240), (150, 190, 235), (220, 235, 245))
    draw = ImageDraw.Draw(image)
    draw.polygon([(0, 150), (80, 120), (170, 140), (260, 110), (320, 130), (320, 240), (0, 240)], fill=(110, 160, 80))
    draw.polygon([(0, 190), (120, 175), (320, 195), (320, 240), (0, 240)], fill=(80, 130, 60))
    for x in range(10, 320, 36):  # a fence along the field
        draw.rectangle((x, 180, x + 5, 215), fill=(120, 90, 60))
    draw.line([(0, 190), (320, 192)], fill=(120, 90, 60), width=3)
    draw.ellipse((250, 20, 290, 60), fill=(250, 240, 170))  # sun
    mask = Image.new("L", image.size, 0)
    shapes = ImageDraw.Draw(mask)
    for target, value in ((draw, (70, 45, 30)), (shapes, 255)):
        target.rectangle((118, 110, 138, 200), fill=value)  # trunk
    for target, value in ((draw, (40, 100, 40)), (shapes, 255)):
        target.ellipse((78, 40, 178, 130), fill=value)  # crown
    return image.filter(ImageFilter.GaussianBlur(0.6)), mask.convert("RGB")


def images() -> dict[str, Image.Image]:
    scene, scene_mask = field()
    return {
        "animal.png": animal(),
        "vase.png": vase(),
        "bird.png": bird(),
        "field.png": scene,
        "field_mask.png": scene_mask,
    }


def main() -> None:
    for name, image in images().items():
        image.save(HERE / name, optimize=True)
        print(f"wrote {HERE / name} ({image.width} x {image.height} {image.mode})")


if __name__ == "__main__":
    main()
