"""The photos an effect works on: which `<image>` elements, their file bytes and their pixel size.

Runs under Inkscape's own Python with inkex 1.2+: standard library and inkex only.
"""

from __future__ import annotations

import base64
import os
import struct
import urllib.parse
import urllib.request
from dataclasses import dataclass

import inkex

from bridge.errors import InputError
from bridge.files import read_bounded
from bridge.limits import MAX_FILE_BYTES, MAX_NAME_CHARS, check_image_size

LABEL_CHARS = 80  # longer labels and file names are cut: a layer name, not a paragraph
assert LABEL_CHARS <= MAX_NAME_CHARS


class SelectionError(Exception):
    """The user must change what is selected or which file an image points to."""


@dataclass
class Photo:
    element: inkex.Image
    data: bytes  # the image file's bytes, as the engine reads them
    name: str  # for layer names and messages
    size: tuple[int, int]  # (width, height) in pixels


def target_images(svg, scope: str) -> list[inkex.Image]:
    """Selected images, or every image in the current layer (scope "layer"), in document order."""
    if scope == "layer":
        images = list(svg.get_current_layer().descendants().filter(inkex.Image))
        if not images:
            raise SelectionError(
                "The current layer holds no images. Switch to the layer that holds your "
                "photos, or select them and choose 'Selected images'."
            )
        return images
    images = [el for el in svg.selection.values() if isinstance(el, inkex.Image)]
    images += [
        el
        for group in svg.selection.values()
        if not isinstance(group, inkex.Image)
        for el in group.descendants().filter(inkex.Image)
        if el is not group
    ]
    if not images:
        raise SelectionError(
            "Select one or more photos (images) first, or choose 'All images in the current layer' on the Run tab."
        )
    unique = {el.get_id(): el for el in images}
    return list(unique.values())


def read_photo(element: inkex.Image, document_file: str | None) -> Photo:
    """The bytes of an embedded (data URI) or linked image; SelectionError if unreadable."""
    href = element.get("xlink:href") or element.get("href") or ""
    label = short_label(element.label or element.get_id())
    if href.startswith("data:"):
        header, _, payload = href.partition(",")
        try:
            data = (
                base64.b64decode("".join(payload.split()), validate=True)
                if ";base64" in header
                else urllib.parse.unquote_to_bytes(payload)
            )
        except ValueError:
            raise SelectionError(f"Image '{label}' has a damaged embedded picture; re-import it.") from None
        name = label
    else:
        path = _linked_path(element, href, document_file)
        try:  # a regular file only (not /dev/zero, not a FIFO), and never more than the engine takes
            data = read_bounded(path, "the file", MAX_FILE_BYTES)
        except InputError as err:
            raise SelectionError(
                f"Image '{label}' links to {href}, which cannot be read ({err.message}). Relink it "
                "(Object Properties) or embed it (Extensions > Images > Embed Images)."
            ) from None
        name = os.path.basename(path)
    size = pixel_size(data)
    if size is None:
        raise SelectionError(
            f"Image '{label}' is not a PNG, JPEG, WebP, TIFF, BMP or GIF picture the engine "
            "can read. Save it as PNG or JPEG in an image editor, re-import it (File > Import) and "
            "run the effect again."
        )
    check_image_size(*size, f"Image '{label}'")  # before anything (a path mask) is built at this size
    return Photo(element, data, short_label(os.path.splitext(name)[0] if "." in name else name), size)


def short_label(text: str) -> str:
    """`text` cut to LABEL_CHARS, for layer names and the engine's job name."""
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "\u2026"


def _linked_path(element: inkex.Image, href: str, document_file: str | None) -> str:
    """Resolve a link as Inkscape does. Inkscape rewrites relative links relative to the temporary
    copy it hands the script, so try the folder of that copy, then the original document's folder,
    then the absolute path Inkscape recorded (sodipodi:absref)."""
    if href.startswith("file:"):
        return urllib.request.url2pathname(urllib.parse.urlparse(href).path)
    candidates = [href] if os.path.isabs(href) else []
    for folder in (os.path.dirname(document_file or ""), os.path.dirname(os.environ.get("DOCUMENT_PATH", ""))):
        if folder and not os.path.isabs(href):
            candidates.append(os.path.join(folder, urllib.parse.unquote(href)))
    absref = element.get("sodipodi:absref")
    if absref:
        candidates.append(absref)
    for path in candidates:
        if os.path.isfile(path):
            return path
    return candidates[0] if candidates else href


def pixel_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the file header of PNG, JPEG, WebP, TIFF, BMP or GIF; None otherwise."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    if data[:2] == b"BM" and len(data) >= 26:
        w, h = struct.unpack("<ii", data[18:26])
        return abs(w), abs(h)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_size(data)
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff_size(data)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return w, h
        i += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    """Width and height tags (256, 257) of the first image file directory; classic TIFF only."""
    order = "<" if data[:2] == b"II" else ">"
    try:
        (ifd,) = struct.unpack(order + "I", data[4:8])
        (count,) = struct.unpack(order + "H", data[ifd : ifd + 2])
        size = {}
        for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
            tag, kind = struct.unpack(order + "HH", data[entry : entry + 4])
            if tag in (256, 257):  # SHORT or LONG, stored in the entry itself
                value = data[entry + 8 : entry + 10] if kind == 3 else data[entry + 8 : entry + 12]
                (size[tag],) = struct.unpack(order + ("H" if kind == 3 else "I"), value)
                if len(size) == 2:
                    break
    except struct.error:
        return None
    return (size[256], size[257]) if len(size) == 2 else None
