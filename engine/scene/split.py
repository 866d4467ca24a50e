"""A scene photo split into what CLIPascene sketches separately (docs/method.md#scene-split and #object-normalisation).

- Object: the masked object on white, enlarged when it is small (docs/method.md#object-normalisation),
  with the map back to the
  scene's pixels (`ObjectFrame`).
- Background: the photo with the object region (mask dilated 11 x 11) inpainted: LaMa when the
  optional `simple_lama_inpainting` package is installed, else OpenCV's Telea inpainting, which always
  works offline. LaMa is what the official code uses; OpenCV smears colours into the hole instead of
  inventing texture, which is enough to keep the object's outline out of the background sketch.

Without a mask the whole photo is the object and there is no background.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image

DILATION = 11  # px, the official background mask's dilation (a square kernel)
OBJECT_SHARE = 0.7  # a lone small object is enlarged to this share of the photo's short side
SMALL_COMPONENT = 1 / 3  # components below this fraction of the largest one are ignored
INPAINT_SIDE = 512  # OpenCV inpaints at most this long side; the result is pasted back at full size
INPAINT_RADIUS = 5  # px at the inpainting resolution
MIN_BACKGROUND = 0.01  # below this share of the photo left after dilation, there is no background


@dataclass(frozen=True)
class ObjectFrame:
    """Maps the object image's pixels (x, y) to the scene's: scene = origin + (p - placed) / scale.

    Identity when the object was not enlarged. Continuous coordinates: pixel i covers [i, i + 1).
    """

    scale: tuple[float, float] = (1.0, 1.0)  # object-image px per scene px, (x, y)
    origin: tuple[float, float] = (0.0, 0.0)  # scene point (the crop's corner) ...
    placed: tuple[float, float] = (0.0, 0.0)  # ... shown at this object-image point

    def to_scene(self, points: np.ndarray) -> np.ndarray:
        """Object-image (..., 2) x, y -> scene pixels (..., 2)."""
        p = np.asarray(points, dtype=np.float64)
        return np.asarray(self.origin) + (p - np.asarray(self.placed)) / np.asarray(self.scale)


@dataclass
class SceneSplit:
    object_image: Image.Image  # RGB, the photo's size: the object on white (enlarged if small)
    frame: ObjectFrame  # object image -> scene pixels
    background_image: Image.Image | None  # RGB, the photo's size, object inpainted; None: none
    mask: np.ndarray | None  # (H, W) bool object mask the background strokes avoid; None: none
    notes: list[str] = field(default_factory=list)


def split_scene(image: Image.Image, mask: np.ndarray | None) -> SceneSplit:
    """Object and background of an RGB `image` given its object mask (H, W) bool, or None."""
    if mask is None:
        return SceneSplit(
            image,
            ObjectFrame(),
            None,
            None,
            ["no mask: the whole image is sketched as one object (no background layer)"],
        )
    object_image, frame = normalise_object(image, mask)
    region = dilate(mask, DILATION)
    if (~region).mean() < MIN_BACKGROUND:
        return SceneSplit(
            object_image,
            frame,
            None,
            None,
            ["the mask covers (nearly) the whole image: object only, no background layer"],
        )
    background, note = inpaint(image, region)
    return SceneSplit(object_image, frame, background, mask, [note])


def dilate(mask: np.ndarray, size: int = DILATION) -> np.ndarray:
    """(H, W) bool mask grown by a size x size square (the official 11 x 11 binary dilation)."""
    kernel = np.ones((size, size), np.uint8)
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


def keep_large_components(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool: the mask without connected components under 1/3 of the largest
    (docs/method.md#object-normalisation)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return mask.astype(bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    kept = 1 + np.flatnonzero(areas >= SMALL_COMPONENT * areas.max())
    return np.isin(labels, kept)


def normalise_object(image: Image.Image, mask: np.ndarray) -> tuple[Image.Image, ObjectFrame]:
    """The object on white, enlarged as docs/method.md#object-normalisation, and the map back to the scene.

    If, without its small components, the object is one component whose bounding box's long side is
    under 0.7 x the photo's short side, that crop is scaled so its long side is 0.7 x the short side
    and pasted centred on a white photo-sized canvas; otherwise the object stays where it is.
    """
    white = Image.new("RGB", image.size, (255, 255, 255))
    large = keep_large_components(mask)
    count, _ = cv2.connectedComponents(large.astype(np.uint8), connectivity=8)
    ys, xs = np.nonzero(large)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1  # pixel edges of the bounding box
    target = int(OBJECT_SHARE * min(image.size))
    long_side = max(x1 - x0, y1 - y0)
    if count - 1 != 1 or long_side >= target:
        return Image.composite(image, white, Image.fromarray(mask.astype(bool))), ObjectFrame()
    factor = target / long_side
    new_w, new_h = max(1, round((x1 - x0) * factor)), max(1, round((y1 - y0) * factor))
    box = (int(x0), int(y0), int(x1), int(y1))
    crop = Image.composite(image, white, Image.fromarray(large)).resize(
        (new_w, new_h), Image.Resampling.BICUBIC, box=box
    )
    px, py = (image.width - new_w) // 2, (image.height - new_h) // 2
    white.paste(crop, (px, py))
    frame = ObjectFrame(
        scale=(new_w / (x1 - x0), new_h / (y1 - y0)), origin=(float(x0), float(y0)), placed=(float(px), float(py))
    )
    return white, frame


def inpaint(image: Image.Image, region: np.ndarray) -> tuple[Image.Image, str]:
    """`image` with `region` (H, W) bool filled in, and a note naming the method used."""
    try:
        from simple_lama_inpainting import SimpleLama  # optional; downloads big-lama once
    except ImportError:
        return _inpaint_opencv(image, region), "background inpainted with OpenCV (LaMa is not installed)"
    try:
        filled = SimpleLama()(image, Image.fromarray(region.astype(np.uint8) * 255))
    except Exception as err:  # any model download or runtime failure: OpenCV still gives a background
        return _inpaint_opencv(image, region), f"LaMa failed ({err}); background inpainted with OpenCV"
    filled = filled.convert("RGB").crop((0, 0, image.width, image.height))  # LaMa pads to multiples of 8
    keep = Image.fromarray(region)
    return Image.composite(filled, image, keep), "background inpainted with LaMa"


def _inpaint_opencv(image: Image.Image, region: np.ndarray) -> Image.Image:
    """Telea inpainting at most INPAINT_SIDE px long (the canvas is 224), pasted back into the
    full-size photo inside `region` only, so pixels outside it stay exactly as they were."""
    factor = min(1.0, INPAINT_SIDE / max(image.size))
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    small = np.asarray(image.resize(size, Image.Resampling.BILINEAR))
    hole = np.asarray(Image.fromarray(region).resize(size, Image.Resampling.NEAREST)).astype(np.uint8)
    hole = cv2.dilate(hole, np.ones((3, 3), np.uint8))  # covers the edge pixels the resize blended
    filled = cv2.inpaint(small, hole, INPAINT_RADIUS, cv2.INPAINT_TELEA)
    full = Image.fromarray(filled).resize(image.size, Image.Resampling.BICUBIC)
    return Image.composite(full, image, Image.fromarray(region))
