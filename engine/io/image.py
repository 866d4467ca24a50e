"""Reading the user's photo and mask, with an actionable `InputError` for each way a file is bad.

EXIF orientation is deliberately NOT applied: the sketch's SVG overlays the image exactly as its
pixels are stored (that is what Inkscape shows when it embeds or links the file), so rotating here
would put every stroke in the wrong place.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from bridge.errors import InputError
from bridge.files import open_regular
from bridge.limits import IMAGE_FORMATS, MAX_PIXELS, check_image_size, too_large

__all__ = ["MAX_PIXELS", "load_image", "load_mask"]

Source = str | os.PathLike | bytes

_FORMATS_HINT = "use a PNG, JPEG, WebP, TIFF, BMP or GIF image"
_REEXPORT_HINT = "re-export or re-download the file"
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})


def load_image(source: Source) -> Image.Image:
    """Read a photo as a fully decoded RGB image; transparency is composited on white.

    `source` is a path or the file's bytes. PNG, JPEG, WebP, TIFF, BMP and GIF (first frame) are
    supported; grayscale, palette, CMYK, 16-bit and float images are converted to 8-bit RGB.
    """
    with _decoded(source, "image") as (im, _label):
        return _flatten_on_white(im)


def load_mask(source: Source, size: tuple[int, int]) -> tuple[np.ndarray, str | None]:
    """Read an object mask and fit it to a photo of `size` = (width, height).

    Object pixels are the opaque ones if the mask has real transparency, else the bright ones
    (luminance > 127). Returns the mask as bool (height, width), and a note for the user when it had
    to be resized (nearest neighbour, so it stays binary), else None.
    """
    with _decoded(source, "mask") as (im, label):
        mask = _object_pixels(im)  # (h, w) bool, at the mask file's own size
    note = None
    if mask.shape != (size[1], size[0]):
        note = f"mask {mask.shape[1]}x{mask.shape[0]} resized to {size[0]}x{size[1]} to fit the image"
        mask = np.asarray(Image.fromarray(mask).resize(size, Image.Resampling.NEAREST))
    if not mask.any():
        raise InputError(
            f"{label} marks no object pixels",
            hint="paint the object white (or opaque) and the background black (or transparent), "
            "or pass --mask none to sketch the whole image",
        )
    return mask, note


@contextmanager
def _decoded(source: Source, what: str) -> Iterator[tuple[Image.Image, str]]:
    """Yield (the fully decoded image in its stored mode, a label naming it in messages).

    Use the image inside the `with`: a file is closed on exit, and a multi-frame image may still
    refer to it.
    """
    label = f"{what} data" if isinstance(source, bytes) else f"{what} file {os.fspath(source)}"
    with _binary_stream(source, what) as fp:
        # PIL only warns between its own limit and twice that: make the warning an error too. The
        # filter is process-global, so a thread race can at worst print the warning (the size
        # check below still refuses the file: PIL's limit is above MAX_PIXELS) or leave the
        # filter on elsewhere (other code then refuses bombs too).
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = _identify(fp, label)
        check_image_size(*im.size, label)
        _decode_fully(im, label)
        yield im, label


@contextmanager
def _binary_stream(source: Source, what: str) -> Iterator[BinaryIO]:
    """Open `source` for reading, turning each way a path can be unusable into an InputError."""
    if isinstance(source, bytes):
        if not source:
            raise InputError(f"{what} data is empty (0 bytes)", hint=_REEXPORT_HINT)
        yield io.BytesIO(source)
        return
    path = Path(source)
    with open_regular(path, f"{what} file") as fp:
        if os.fstat(fp.fileno()).st_size == 0:
            raise InputError(f"{what} file is empty (0 bytes): {path}", hint=_REEXPORT_HINT)
        yield fp


def _identify(fp: BinaryIO, label: str) -> Image.Image:
    """Read only the header: format, mode and size, no pixel data yet. Only IMAGE_FORMATS are tried,
    so no other format's reader (Ghostscript for EPS, ...) ever sees the data."""
    try:
        return Image.open(fp, formats=IMAGE_FORMATS)
    except UnidentifiedImageError as e:
        message = f"{label} is not an image in a supported format"
        raise InputError(message, hint=_FORMATS_HINT) from e
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise too_large(label) from e
    # A header that makes a reader fail (a zTXt or iCCP chunk that inflates past Pillow's limit, a
    # truncated WebP, ...) is a damaged file like any other, as in _decode_fully.
    except Exception as e:
        raise InputError(f"{label} is damaged or not a usable image ({_first_line(e)})", hint=_REEXPORT_HINT) from e


def _decode_fully(im: Image.Image, label: str) -> None:
    """Decode every pixel now, so a truncated or corrupt file fails here and not mid-run."""
    try:
        im.load()
    # Each format's decoder reports damaged data its own way (OSError, SyntaxError, ValueError,
    # EOFError, struct.error, ...): any failure while decoding means the data is unusable.
    except Exception as e:
        raise InputError(f"{label} is truncated or corrupt ({_first_line(e)})", hint=_REEXPORT_HINT) from e


def _first_line(err: Exception) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def _has_transparency(im: Image.Image) -> bool:
    """Whether the mode or a tRNS / GIF transparency key can make pixels transparent."""
    palette_alpha = im.mode == "P" and im.palette is not None and im.palette.mode == "RGBA"
    return im.mode in _ALPHA_MODES or "transparency" in im.info or palette_alpha


def _flatten_on_white(im: Image.Image) -> Image.Image:
    """RGB image with transparent areas white (the colour of the sketch's paper)."""
    if not _has_transparency(im):
        return _to_rgb(im)
    white = Image.new("RGBA", im.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, im.convert("RGBA")).convert("RGB")


def _to_rgb(im: Image.Image) -> Image.Image:
    """8-bit RGB copy of an image, ignoring any transparency."""
    return _to_8bit(im).convert("RGB")


def _to_8bit(im: Image.Image) -> Image.Image:
    """Scale 16-bit and float grayscale to 8-bit "L"; other modes are returned unchanged.

    PIL's own conversion clips these to 0..255, which turns most 16-bit images white.
    """
    if im.mode in _SIXTEEN_BIT_MODES:
        # "I" is where older Pillow and some TIFFs put 16-bit data: read it as 0..65535 too.
        values = np.asarray(im).astype(np.float64)  # (h, w)
        return _gray(np.clip(values, 0, 65535) / 65535)
    if im.mode == "F":
        values = np.nan_to_num(np.asarray(im, dtype=np.float64))  # (h, w)
        lo, hi = values.min(), values.max()
        if lo >= 0 and hi <= 1:  # the usual convention for float images
            return _gray(values)
        # No fixed white point: stretch the range (a constant image becomes black).
        return _gray((values - lo) / (hi - lo) if hi > lo else np.zeros_like(values))
    return im


def _gray(unit: np.ndarray) -> Image.Image:
    """Mode "L" image from values in [0, 1], shape (h, w)."""
    return Image.fromarray(np.round(unit * 255).astype(np.uint8))


def _object_pixels(im: Image.Image) -> np.ndarray:
    """bool (h, w): True on the object. Alpha decides when some pixel is not fully opaque."""
    if _has_transparency(im):
        alpha = np.asarray(im.convert("RGBA").getchannel("A"))  # (h, w) uint8
        if alpha.min() < 255:
            return alpha > 127
    return np.asarray(_to_rgb(im).convert("L")) > 127
