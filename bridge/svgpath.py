"""SVG path data as Bézier strokes, and the attributes the project writes on a sketch's paths.

The engine reads sketches back from SVG files and the Inkscape extension reads them from the open
document; both split a path's data here, so a path means the same strokes to both. Every drawn
segment is one stroke: a straight line (2 control points: L, H, V and a closing Z), a quadratic
(3: Q, T) or a cubic (4: C, S), in absolute coordinates. Elliptical arcs (A) are refused: a sketch
stroke is a Bézier segment, and Inkscape's pen and pencil tools never draw arcs.

Standard library only (the light package).
"""

from __future__ import annotations

import re

# The project's own XML namespace: per-path data that Inkscape keeps when it saves a document.
NS = "https://sketch-abstraction.org/ns"
PREFIX = "sketchabs"
IMPORTANCE = f"{{{NS}}}importance"  # how much the stroke matters: higher = more important
SOURCE = f"{{{NS}}}source"  # refine results: the index of the given stroke this one refines

Point = tuple[float, float]
Segment = tuple[Point, ...]  # 2, 3 or 4 control points

_TOKEN = re.compile(r"[A-Za-z]|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_ARGUMENTS = {"M": 2, "L": 2, "H": 1, "V": 1, "C": 6, "S": 4, "Q": 4, "T": 2, "Z": 0}
_STROKE_LABEL = re.compile(r"\d+ strokes?")


class PathDataError(ValueError):
    """Path data that is not a list of Bézier segments; the message says what is wrong."""


def segments(d: str) -> list[Segment]:
    """The Bézier segments a path's data `d` draws, in order, in absolute coordinates.

    Raises PathDataError for malformed data and for arcs.
    """
    if not set(_TOKEN.sub("", d)) <= set(" \t\r\n,"):
        raise PathDataError("the path data holds characters that are not SVG path commands or numbers")
    tokens = _TOKEN.findall(d)
    out: list[Segment] = []
    current = start = (0.0, 0.0)
    control: Point | None = None  # the last C/S or Q/T control point, which a following S or T mirrors
    command, previous, i = "", "", 0
    while i < len(tokens):
        if tokens[i].isalpha():
            command, i = tokens[i], i + 1
            if not previous and command not in "Mm":
                raise PathDataError("path data must start with M")
        elif not command or command in "Zz":
            raise PathDataError("numbers without a command: path data starts with M, and Z takes no numbers")
        name, relative = command.upper(), command.islower()
        if name == "A":
            raise PathDataError("an elliptical arc (A) is not a Bézier stroke")
        if name not in _ARGUMENTS:
            raise PathDataError(f"unknown path command {command!r}")
        count = _ARGUMENTS[name]
        numbers = tokens[i : i + count]
        if len(numbers) < count or any(t.isalpha() for t in numbers):
            raise PathDataError(f"{command} needs {count} numbers")
        i += count
        values = [float(t) for t in numbers]
        base = current if relative else (0.0, 0.0)
        points = [(base[0] + x, base[1] + y) for x, y in zip(values[::2], values[1::2])]
        segment: Segment | None = None
        if name == "M":
            current = start = points[0]
            command = "l" if relative else "L"  # more pairs after a moveto are lines
        elif name == "Z":
            segment = (current, start) if current != start else None
            current = start
        elif name == "L":
            segment = (current, points[0])
        elif name == "H":
            segment = (current, (base[0] + values[0], current[1]))
        elif name == "V":
            segment = (current, (current[0], base[1] + values[0]))
        elif name in "CQ":
            segment = (current, *points)
        elif name == "S":
            first = _mirror(control, current) if previous in ("C", "S") else current
            segment = (current, first, *points)
        else:  # T
            segment = (current, _mirror(control, current) if previous in ("Q", "T") else current, points[0])
        if segment is not None:
            out.append(segment)
            current = segment[-1]
        control = segment[-2] if segment is not None and len(segment) > 2 else None
        previous = name
    return out


def _mirror(point: Point | None, about: Point) -> Point:
    """`point` reflected about `about` (where an S or T takes its first control point from)."""
    assert point is not None  # callers check that the previous segment left one
    return (2 * about[0] - point[0], 2 * about[1] - point[1])


def stroke_label(label: str, count: int) -> str:
    """A layer label that counts its strokes ("16 strokes", as the engine names levels), recounted;
    any other label is the designer's and stays."""
    if _STROKE_LABEL.fullmatch(label.strip()):
        return f"{count} stroke{'' if count == 1 else 's'}"
    return label
