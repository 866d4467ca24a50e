"""SVG transforms as affine matrices: the `transform` attribute's list syntax, and the map from an
element's own user units to the document's (its transform composed with every ancestor's).

A matrix is SVG's (a, b, c, d, e, f): x' = a x + c y + e, y' = b x + d y + f. A transform list
applies right to left: "translate(10) scale(2)" scales first, as SVG says.

Standard library only (the light package).
"""

from __future__ import annotations

import math
import re
from typing import Any

from bridge.errors import InputError

Matrix = tuple[float, float, float, float, float, float]
IDENTITY: Matrix = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)
Point = tuple[float, float]

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_ONE = re.compile(r"\s*(matrix|translate|scale|rotate|skewX|skewY)\s*\(([^()]*)\)\s*,?")
_ARGUMENTS = re.compile(rf"\s*(?:{_NUMBER}(?:\s*,?\s*{_NUMBER})*)?\s*")
_COUNTS = {"matrix": (6,), "translate": (1, 2), "scale": (1, 2), "rotate": (1, 3), "skewX": (1,), "skewY": (1,)}


class TransformError(ValueError):
    """A transform attribute that is not an SVG transform list; the message says what is wrong."""


def apply(m: Matrix, point: Point) -> Point:
    x, y = point
    return (m[0] * x + m[2] * y + m[4], m[1] * x + m[3] * y + m[5])


def multiply(m: Matrix, n: Matrix) -> Matrix:
    """The map `m` after `n` (a point goes through `n` first)."""
    a, b, c, d, e, f = m
    return (
        a * n[0] + c * n[1],
        b * n[0] + d * n[1],
        a * n[2] + c * n[3],
        b * n[2] + d * n[3],
        a * n[4] + c * n[5] + e,
        b * n[4] + d * n[5] + f,
    )


def invert(m: Matrix) -> Matrix:
    a, b, c, d, e, f = m
    det = a * d - b * c
    if det == 0 or not math.isfinite(det):
        raise InputError("a path's transform squashes it flat (not invertible)", "reset the transform in Inkscape")
    return (d / det, -b / det, -c / det, a / det, (c * f - d * e) / det, (b * e - a * f) / det)


def parse(text: str) -> Matrix:
    """The matrix of a transform list ("translate(10 5) rotate(30)"); TransformError if it is not one."""
    out, position = IDENTITY, 0
    while position < len(text):
        found = _ONE.match(text, position)
        if found is None:
            if not text[position:].strip():
                break
            raise TransformError(f"{text[position:].strip()[:40]!r} is not a transform (matrix, translate, ...)")
        name, arguments = found.groups()
        if not _ARGUMENTS.fullmatch(arguments):
            raise TransformError(f"{name}({arguments.strip()[:40]}) takes numbers only")
        values = [float(v) for v in re.findall(_NUMBER, arguments)]
        if len(values) not in _COUNTS[name]:
            counts = " or ".join(map(str, _COUNTS[name]))
            raise TransformError(f"{name} takes {counts} numbers, got {len(values)}")
        if not all(math.isfinite(v) for v in values):
            raise TransformError(f"{name} has a number out of range")
        out = multiply(out, _one(name, values))
        position = found.end()
    return out


def _one(name: str, v: list[float]) -> Matrix:
    if name == "matrix":
        return (v[0], v[1], v[2], v[3], v[4], v[5])
    if name == "translate":
        return (1.0, 0.0, 0.0, 1.0, v[0], v[1] if len(v) > 1 else 0.0)
    if name == "scale":
        return (v[0], 0.0, 0.0, v[1] if len(v) > 1 else v[0], 0.0, 0.0)
    if name == "rotate":
        cos, sin = math.cos(math.radians(v[0])), math.sin(math.radians(v[0]))
        turn = (cos, sin, -sin, cos, 0.0, 0.0)
        if len(v) == 1:
            return turn
        return multiply(multiply((1.0, 0.0, 0.0, 1.0, v[1], v[2]), turn), (1.0, 0.0, 0.0, 1.0, -v[1], -v[2]))
    if name == "skewX":
        return (1.0, 0.0, math.tan(math.radians(v[0])), 1.0, 0.0, 0.0)
    return (1.0, math.tan(math.radians(v[0])), 0.0, 1.0, 0.0, 0.0)  # skewY


def to_document(element: Any) -> Matrix:
    """The map from `element`'s user units to the document root's: its own transform and every
    ancestor's (an lxml element); InputError naming the element and its line for one that does not
    parse."""
    out = IDENTITY
    node = element
    while node is not None:
        text = node.get("transform")
        if text:
            try:
                out = multiply(parse(text), out)
            except TransformError as err:
                where = "" if node is element else f" (on the group '{node.get('id', '?')}' around it)"
                raise InputError(
                    f"{_name(element)} (line {element.sourceline}) cannot be read: its transform{where} is not "
                    f"valid: {err}",
                    "fix or remove that transform attribute (Inkscape writes valid ones when it saves)",
                ) from None
        node = node.getparent()
    return out


def _name(element: Any) -> str:
    tag = str(element.tag).rpartition("}")[2]
    return f"{tag} '{element.get('id', '?')}'"
