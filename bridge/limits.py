"""The limits every part enforces on what a user hands in: one source for the engine, the CLI and the
extension (which checks a photo's header before it builds a mask at the photo's size).

Standard library only.
"""

from __future__ import annotations

from bridge.errors import InputError

IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF")
"""The formats a photo or mask may have (Pillow's names). Nothing else is even identified: Pillow
would hand an EPS or PDF to Ghostscript, an interpreter that runs whatever the file says."""

MAX_PIXELS = 64_000_000
"""Largest image accepted, width x height (8000 x 8000). A 64 MP RGB image is ~190 MB decoded; the
methods work on a 224 x 224 canvas, so nothing is gained from more, and a tiny compressed file that
claims more is a decompression bomb."""

MAX_SIDE = 10_000
"""Longest side accepted, in pixels. The photo is padded to a square of its long side before it is
scaled to the canvas, so this bounds that square: 100 MP, ~300 MB as RGB. Without it a 1 x 100000
image (0.1 MP) would need a 10^10-pixel square."""

MAX_ASPECT = 20
"""Largest ratio of the long side to the short one. On the 224 px canvas the short side of a 20:1
photo is 11 px wide already; beyond that there is nothing left to sketch."""

MAX_FILE_BYTES = 256 * 2**20
"""Largest photo or mask file a client reads to send (the engine's default message limit too)."""

MAX_COORDINATE = 10 * MAX_SIDE
"""Largest distance from the photo's corner, in photo pixels, a stroke's control point may lie: a
stroke moved off the photo by hand stays well inside it, while a number like 1e308 (finite, but
infinite once scaled to the canvas) is refused before any job runs."""

MAX_NAME_CHARS = 500
"""Longest job name (the photo's file name or the layer's label) the engine stores and shows."""

_DOWNSCALE = "downscale it, e.g. to 4000 px on the long side (sketches are drawn at 224 x 224)"
_REEXPORT = "re-export or re-download the file"


def check_image_size(width: int, height: int, label: str) -> None:
    """InputError naming `label` when a `width` x `height` image (read from its header, before any
    pixel is decoded) is empty, too large, or too elongated to sketch."""
    if width <= 0 or height <= 0:
        raise InputError(f"{label} has zero size ({width} x {height})", _REEXPORT)
    long, short = max(width, height), min(width, height)
    if long > MAX_ASPECT * short:
        raise InputError(
            f"{label} is {width} x {height} pixels, {long / short:,.0f} times longer than wide: "
            f"at most {MAX_ASPECT}:1 can be sketched",
            "crop it to the part you want sketched",
        )
    if width * height > MAX_PIXELS:
        raise InputError(
            f"{label} is too large: {width} x {height} = {width * height:,} pixels, over the limit of "
            f"{MAX_PIXELS:,} pixels",
            _DOWNSCALE,
        )
    if long > MAX_SIDE:
        raise InputError(
            f"{label} is too large: its long side of {long:,} pixels is over the limit of {MAX_SIDE:,}",
            _DOWNSCALE,
        )


def too_large(label: str) -> InputError:
    """The error for an image whose header claims more pixels than Pillow will even open."""
    return InputError(f"{label} is too large: over the limit of {MAX_PIXELS:,} pixels", _DOWNSCALE)
