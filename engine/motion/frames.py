"""An animation's frames, drawn with the engine's own rasteriser, and the GIF and MP4 made of them.

Every stroke is drawn as it is in the SVG: a pen stroke at its width, an ink stroke with its knot
widths (`rasterize_tapered`; equal knots draw a pen stroke). A stroke being drawn is its Bézier
centre line cut at the time's share of its parameter (de Casteljau) with its knots resampled there.
Each stroke ends on a frame of its own, so there is at least one frame per stroke; then the finished
sketch is held. GIF and MP4 have no transparency: background "none" draws on white there.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bridge.atomic import write_atomic
from bridge.errors import InputError
from engine.motion.plan import Plan, Stroke
from engine.render import rasterize_tapered

VIDEO_HINT = "install the video extra (pip install 'sketch-abstraction[video]', which brings imageio-ffmpeg)"


@dataclass
class Frame:
    rgb: np.ndarray  # (H, W, 3) uint8
    seconds: float
    strokes: int  # strokes finished in this frame


def frame_size(plan: Plan) -> tuple[int, int, float]:
    """(W, H) px of the frames and px per document unit: the document's size, down to `size` at most."""
    _, _, w, h = plan.view_box
    scale = min(1.0, plan.params.size / max(w, h))
    return max(1, round(w * scale)), max(1, round(h * scale)), scale


def frames(plan: Plan) -> Iterator[Frame]:
    """The background, then every stroke drawn in `plan.params.fps` steps of its time, then the hold."""
    W, H, scale = frame_size(plan)
    canvas = _background(plan, W, H, scale)  # (H, W, 3) in [0, 1]
    fps = plan.params.fps
    yield Frame(_bytes(canvas), 1 / fps, 0)
    for index, stroke in enumerate(plan.strokes):
        points, knots = _in_pixels(stroke, plan, scale)
        color = _rgb(stroke.drawn.color)
        steps = max(1, round(stroke.seconds * fps))
        for step in range(1, steps + 1):
            cover = _coverage(points, knots, step / steps, (H, W))[..., None]
            image = canvas * (1 - cover) + color * cover
            yield Frame(_bytes(image), stroke.seconds / steps, index + 1 if step == steps else index)
        canvas = image
    if plan.params.hold > 0:
        yield Frame(_bytes(canvas), plan.params.hold, len(plan.strokes))


def gif_bytes(plan: Plan) -> bytes:
    """An endlessly looping GIF of `frames(plan)`."""
    shown = list(frames(plan))
    images = [Image.fromarray(frame.rgb) for frame in shown]
    buffer = io.BytesIO()
    durations = [max(20, round(1000 * frame.seconds)) for frame in shown]  # browsers floor GIF delays at 20 ms
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0)
    return buffer.getvalue()


def write_gif(path: str | os.PathLike, plan: Plan) -> Path:
    return write_atomic(path, gif_bytes(plan))


def write_mp4(path: str | os.PathLike, plan: Plan) -> Path:
    """An H.264 MP4 at `fps`, each frame repeated for its time; InputError without imageio-ffmpeg."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise InputError("MP4 needs ffmpeg through the imageio-ffmpeg package, not installed", VIDEO_HINT) from None
    W, H, _ = frame_size(plan)
    even = (W + W % 2, H + H % 2)  # H.264 wants even sides
    path = Path(path)
    fd, temp = tempfile.mkstemp(suffix=".mp4", dir=path.parent)
    os.close(fd)
    try:
        writer = imageio_ffmpeg.write_frames(temp, even, fps=plan.params.fps, macro_block_size=2, quality=7)
        writer.send(None)
        for frame in frames(plan):
            padded = np.full((even[1], even[0], 3), 255, np.uint8)
            padded[:H, :W] = frame.rgb
            for _ in range(max(1, round(frame.seconds * plan.params.fps))):
                writer.send(np.ascontiguousarray(padded))
        writer.close()
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    return path


def _coverage(points: np.ndarray, knots: np.ndarray, share: float, size: tuple[int, int]) -> np.ndarray:
    """(H, W) coverage of one stroke drawn up to `share` of its parameter; points (k, 2), knots (m,) px."""
    if share < 1:
        points = _head(points, share)
        knots = np.interp(np.linspace(0, share, len(knots)), np.linspace(0, 1, len(knots)), knots)
    with torch.no_grad():
        image = rasterize_tapered(
            torch.as_tensor(points, dtype=torch.float32)[None, None],
            torch.as_tensor(knots, dtype=torch.float32)[None, None],
            size,
        )
    return 1 - image[0, 0].numpy().astype(np.float64)


def _head(points: np.ndarray, share: float) -> np.ndarray:
    """The control points of the same curve's part t in [0, share] (de Casteljau)."""
    head, level = [points[0]], points
    while len(level) > 1:
        level = (1 - share) * level[:-1] + share * level[1:]
        head.append(level[0])
    return np.array(head)


def _in_pixels(stroke: Stroke, plan: Plan, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The stroke's control points (k, 2) and knot half-widths (m,) in frame pixels."""
    a, b, c, d, e, f = stroke.to_document
    x0, y0, _, _ = plan.view_box
    points = (stroke.drawn.points @ np.array([[a, b], [c, d]]) + [e - x0, f - y0]) * scale
    widths = stroke.drawn.ink if stroke.drawn.ink is not None else np.array([stroke.drawn.width] * 2)
    return points, widths / 2 * math.sqrt(abs(a * d - b * c)) * scale


def _background(plan: Plan, W: int, H: int, scale: float) -> np.ndarray:
    canvas = np.ones((H, W, 3))
    if plan.photo is None:
        return canvas
    from engine.preview import PHOTO_OPACITY

    image = plan.photo.element
    x, y = (float(image.get(name, "0")) for name in ("x", "y"))
    w, h = (float(image.get(name, "0")) for name in ("width", "height"))
    a, b, c, d, e, f = plan.photo.to_document
    corners = np.array([[x, y], [x + w, y], [x, y + h], [x + w, y + h]]) @ np.array([[a, b], [c, d]]) + [e, f]
    x0, y0, _, _ = plan.view_box
    lo = np.floor((corners.min(0) - [x0, y0]) * scale).astype(int)
    hi = np.ceil((corners.max(0) - [x0, y0]) * scale).astype(int)
    if (hi - lo).min() < 1:
        return canvas
    photo = Image.open(io.BytesIO(plan.photo.data)).convert("RGB").resize(tuple(hi - lo), Image.Resampling.BICUBIC)
    pixels = 1 - PHOTO_OPACITY * (1 - np.asarray(photo, dtype=np.float64) / 255)  # faded, as in previews
    top, left = max(0, lo[1]), max(0, lo[0])  # the photo's part inside the frame
    bottom, right = min(H, hi[1]), min(W, hi[0])
    if bottom > top and right > left:
        canvas[top:bottom, left:right] = pixels[top - lo[1] : bottom - lo[1], left - lo[0] : right - lo[0]]
    return canvas


def _rgb(color: str) -> np.ndarray:
    """A hex colour (#rgb or #rrggbb) as (3,) in [0, 1]; anything else is black."""
    text = color.strip().lstrip("#")
    if len(text) == 3:
        text = "".join(ch * 2 for ch in text)
    try:
        return np.array([int(text[i : i + 2], 16) for i in (0, 2, 4)], dtype=np.float64) / 255
    except ValueError:
        return np.zeros(3)


def _bytes(image: np.ndarray) -> np.ndarray:
    return (image * 255).round().clip(0, 255).astype(np.uint8)
