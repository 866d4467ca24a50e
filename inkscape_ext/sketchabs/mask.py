"""An object mask drawn by the user: the selected paths over a photo, as a PNG in its pixel space.

The engine reads masks as images (white = object), so a path becomes one: outlines flattened to
polygons in the photo's pixels and filled with the even-odd rule, scanline by scanline, then
written as an 8-bit grey PNG. Standard library and inkex only (Inkscape's Python has no PIL).
"""

from __future__ import annotations

import struct
import zlib

import inkex
from inkex import bezier

FLATNESS_PX = 0.5  # largest distance between a curve and its polygon, in photo pixels


def mask_png(shapes, pixel_to_document: inkex.Transform, size: tuple[int, int]) -> bytes:
    """PNG (size) of the area inside `shapes` (inkex shape elements), mapped into photo pixels."""
    to_pixels = -pixel_to_document
    polygons = []
    for shape in shapes:
        path = shape.path.to_absolute().transform(to_pixels @ shape.composed_transform())
        for subpath in path.to_superpath():
            bezier.cspsubdiv([subpath], FLATNESS_PX)  # in place: adds nodes until each piece is flat
            polygons.append([(node[1][0], node[1][1]) for node in subpath])
    return _png_grey(_fill_even_odd(polygons, size), size)


def _fill_even_odd(polygons, size: tuple[int, int]) -> list[bytearray]:
    """Rows of 0/255 bytes: a pixel is inside when its centre is crossed an odd number of times."""
    width, height = size
    edges = [(p[i], p[(i + 1) % len(p)]) for p in polygons if len(p) > 2 for i in range(len(p))]
    rows = []
    for row in range(height):
        y = row + 0.5
        crossings = sorted(
            x0 + (y - y0) * (x1 - x0) / (y1 - y0) for (x0, y0), (x1, y1) in edges if (y0 <= y < y1) or (y1 <= y < y0)
        )
        line = bytearray(width)
        for start, end in zip(crossings[::2], crossings[1::2]):
            lo, hi = max(0, int(start + 0.5)), min(width, int(end + 0.5))  # pixel centres inside
            if hi > lo:
                line[lo:hi] = b"\xff" * (hi - lo)
        rows.append(line)
    return rows


def _png_grey(rows: list[bytearray], size: tuple[int, int]) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + bytes(row) for row in rows)  # filter type 0 on every row
    header = struct.pack(">IIBBBBB", size[0], size[1], 8, 0, 0, 0, 0)  # 8-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
