"""A scene photo split into what CLIPascene sketches separately (docs/method.md#scene-split and #object-normalisation).

Two masks, as the official code:
- Object: the photo cut with the UNDILATED object mask, on white, enlarged when it is small
  (docs/method.md#object-normalisation), with the map back to the scene's pixels (`ObjectFrame`).
- Background: the photo with a hole where the object is, filled in (engine/scene/inpaint.py). The
  hole is the mask dilated by an 11 x 11 square at U2-Net's 320 x 320 scale (`hole_mask`): about
  1.6 % of each side, whatever the photo's size, as the official mask file is.

Without a mask the whole photo is the object and there is no background.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image

DILATION = 11  # px at MASK_SCALE: the official background hole's dilation (a square kernel) ...
MASK_SCALE = 320  # ... at U2-Net's input size, to which the official code resizes every photo
OBJECT_SHARE = 0.7  # a lone small object is enlarged to this share of the photo's short side
SMALL_COMPONENT = 1 / 3  # components below this fraction of the largest one are ignored
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


Fill = Callable[[Image.Image, np.ndarray], tuple[Image.Image, str]]  # (photo, hole (H, W) bool) -> (filled, note)


def split_scene(image: Image.Image, mask: np.ndarray | None, fill: Fill) -> SceneSplit:
    """Object and background of an RGB `image` given its undilated object mask (H, W) bool, or None;
    `fill` fills the background's hole."""
    if mask is None:
        return SceneSplit(
            image,
            ObjectFrame(),
            None,
            None,
            ["no mask: the whole image is sketched as one object (no background layer)"],
        )
    object_image, frame = normalise_object(image, mask)
    region = hole_mask(mask)
    if (~region).mean() < MIN_BACKGROUND:
        return SceneSplit(
            object_image,
            frame,
            None,
            None,
            ["the mask covers (nearly) the whole image: object only, no background layer"],
        )
    background, note = fill(image, region)
    return SceneSplit(object_image, frame, background, mask, [note])


def hole_mask(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool: the object `mask` grown by the official 11 x 11 square at U2-Net's 320 x 320
    scale, i.e. by a rectangle of 2 round(5 W / 320) + 1 by 2 round(5 H / 320) + 1 photo pixels (the
    official code dilates at 320 x 320 and resizes the mask to the photo, so both sides scale apart)."""
    height, width = mask.shape
    radius = DILATION // 2
    kx, ky = (2 * round(radius * side / MASK_SCALE) + 1 for side in (width, height))
    return cv2.dilate(mask.astype(np.uint8), np.ones((ky, kx), np.uint8)).astype(bool)


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
