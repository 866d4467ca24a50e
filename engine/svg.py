"""Sketches as Inkscape SVG: one layer per StrokeLayer, one `<path>` per Bézier stroke.

The viewBox is the source image's pixel space, so the strokes overlay the original image exactly
(the official code writes a fixed 224 x 224 canvas instead). Ink layers (StrokeLayer.ink) are
written as PowerStroke paths (engine/powerstroke.py). A sketch's layers are read back by
bridge.sketchlayer (`refine`, the Inkscape extension); here only the document's size and, for
`animate`, one path's stroke as drawn (read_path_stroke: an ink path's centre line is its
`inkscape:original-d`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from lxml import etree

from bridge.atomic import write_atomic
from bridge.errors import InputError
from bridge.limits import MAX_SIDE
from bridge.svgpath import IMPORTANCE, NS, PREFIX, SOURCE
from engine.powerstroke import POWERSTROKE, offset_points, outline_d
from engine.strokes import Sketch, StrokeLayer

SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"
INKSCAPE_NS = "http://www.inkscape.org/namespaces/inkscape"
SODIPODI_NS = "http://sodipodi.sourceforge.net/DTD/sodipodi-0.dtd"
SOURCE_IMAGE_LABEL = "Source image"

_NSMAP = {None: SVG_NS, "xlink": XLINK_NS, "inkscape": INKSCAPE_NS, "sodipodi": SODIPODI_NS, PREFIX: NS}
_SVG, _G, _PATH, _IMAGE = (f"{{{SVG_NS}}}{tag}" for tag in ("svg", "g", "path", "image"))
_DEFS = f"{{{SVG_NS}}}defs"
_PATH_EFFECT = f"{{{INKSCAPE_NS}}}path-effect"  # the element in defs and the path's attribute alike
ORIGINAL_D = f"{{{INKSCAPE_NS}}}original-d"
_GROUPMODE = f"{{{INKSCAPE_NS}}}groupmode"
_LABEL = f"{{{INKSCAPE_NS}}}label"
_SEGMENT = {4: "C", 3: "Q", 2: "L"}  # control points per stroke -> SVG path command
_POINTS = {command: k for k, command in _SEGMENT.items()}
_TOKEN = re.compile(r"[A-Za-z]|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def sketch_to_svg(sketch: Sketch, *, image_href: str | None = None) -> bytes:
    """Serialise `sketch` as a standalone SVG 1.1 document (UTF-8, with XML declaration).

    `image_href`, when given, is shown under the strokes in a locked "Source image" layer.
    Raises ValueError for strokes that are not (n, k, 2) with k in 2, 3, 4, or not finite.
    """
    w, h = str(sketch.width), str(sketch.height)
    root = etree.Element(_SVG, {"version": "1.1", "width": w, "height": h, "viewBox": f"0 0 {w} {h}"}, nsmap=_NSMAP)
    ids: set[str] = set()
    if image_href is not None:
        group = _layer_group(root, SOURCE_IMAGE_LABEL, True, ids)
        group.set(f"{{{SODIPODI_NS}}}insensitive", "true")  # locked: clicks select strokes, not it
        etree.SubElement(
            group,
            _IMAGE,
            {
                f"{{{XLINK_NS}}}href": image_href,
                "x": "0",
                "y": "0",
                "width": w,
                "height": h,
                "preserveAspectRatio": "none",
            },
        )
    for layer in sketch.layers:
        _write_layer(root, layer, ids)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def write_svg(path: str | os.PathLike, sketch: Sketch, **kw) -> Path:
    """Write `sketch_to_svg(sketch, **kw)` to `path`; the file appears whole or not at all."""
    return write_atomic(path, sketch_to_svg(sketch, **kw))


def _fmt(value: float) -> str:
    """Up to 3 decimals, no trailing zeros, no "-0"."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _layer_group(parent: etree._Element, label: str, visible: bool, ids: set[str], key: str = "") -> etree._Element:
    """Append an Inkscape layer with a unique, XML-safe id: `key`'s, else one derived from `label`."""
    slug = re.sub(r"[^a-z0-9]+", "-", (key or label).lower()).strip("-")
    base = slug if key and slug[:1].isalpha() else f"layer-{slug}" if slug else "layer"
    layer_id, suffix = base, 2
    while layer_id in ids:
        layer_id, suffix = f"{base}-{suffix}", suffix + 1
    ids.add(layer_id)
    style = "display:inline" if visible else "display:none"
    return etree.SubElement(parent, _G, {"id": layer_id, _GROUPMODE: "layer", _LABEL: label, "style": style})


def _write_layer(parent: etree._Element, layer: StrokeLayer, ids: set[str]) -> None:
    """Append `layer` as a layer group: its strokes as paths, then its sublayers."""
    points = np.asarray(layer.points, dtype=float)
    if points.ndim != 3 or points.shape[1] not in _SEGMENT or points.shape[2] != 2:
        raise ValueError(f"layer {layer.label!r}: points must be (n, k, 2) with k in 2, 3, 4, got {points.shape}")
    if not (np.isfinite(points).all() and np.isfinite(layer.width)):
        raise ValueError(f"layer {layer.label!r}: control points and width must be finite")
    if any(0 < len(v) != len(points) for v in (layer.importance, layer.sources, layer.widths)):
        raise ValueError(f"layer {layer.label!r}: importance, sources and widths need one value per stroke")
    ink = _ink_widths(layer, len(points))
    group = _layer_group(parent, layer.label, layer.visible, ids, layer.key)
    widths = layer.widths or (layer.width,) * len(points)
    for i, stroke in enumerate(points):
        start, *rest = (f"{_fmt(x)} {_fmt(y)}" for x, y in stroke)
        centre_line = f"M {start} {_SEGMENT[len(stroke)]} {' '.join(rest)}"
        if ink is None:
            style = (
                f"fill:none;stroke:{layer.color};stroke-width:{_fmt(widths[i])};"
                "stroke-linecap:round;stroke-linejoin:round;stroke-opacity:1"
            )
            path = etree.SubElement(group, _PATH, d=centre_line, style=style)
        else:  # presence x width holds for ink too: its knots scale with the stroke's width
            path = _ink_path(group, centre_line, stroke, ink[i] * (widths[i] / layer.width) / 2, layer.color, ids)
        if layer.importance:
            path.set(IMPORTANCE, f"{layer.importance[i]:.6g}")
        if layer.sources:
            path.set(SOURCE, str(layer.sources[i]))
    for sublayer in layer.sublayers:
        _write_layer(group, sublayer, ids)


def _ink_widths(layer: StrokeLayer, n: int) -> np.ndarray | None:
    """The layer's (n, m) knot widths, checked; None for a pen layer."""
    if layer.ink is None:
        return None
    ink = np.asarray(layer.ink, dtype=float)
    if ink.ndim != 2 or len(ink) != n or ink.shape[1] < 2 or not (np.isfinite(ink).all() and (ink > 0).all()):
        raise ValueError(f"layer {layer.label!r}: ink must be (n, m >= 2) positive finite widths, got {ink.shape}")
    return ink


def _ink_path(
    group: etree._Element, centre_line: str, stroke: np.ndarray, half_widths: np.ndarray, color: str, ids: set[str]
) -> etree._Element:
    """An ink stroke: a path with its own PowerStroke effect (engine/powerstroke.py) in the document's defs."""
    root = group.getroottree().getroot()
    defs = root.find(_DEFS)
    if defs is None:
        defs = etree.Element(_DEFS)
        root.insert(0, defs)
    index = len(defs) + 1
    effect_id = _unique(ids, f"powerstroke-{index}")
    etree.SubElement(
        defs, _PATH_EFFECT, {"id": effect_id, **POWERSTROKE, "offset_points": offset_points(half_widths, _fmt)}
    )
    return etree.SubElement(
        group,
        _PATH,
        {
            "id": _unique(ids, f"ink-{index}"),
            _PATH_EFFECT: f"#{effect_id}",
            ORIGINAL_D: centre_line,
            "d": outline_d(stroke, half_widths, _fmt),
            "style": f"fill:{color};fill-opacity:1;fill-rule:nonzero;stroke:none",
        },
    )


def _unique(ids: set[str], base: str) -> str:
    name, suffix = base, 2
    while name in ids:
        name, suffix = f"{base}-{suffix}", suffix + 1
    ids.add(name)
    return name


def document_size(root: etree._Element) -> tuple[int, int]:
    """Source image size: the viewBox "0 0 W H", or the width and height in px without one."""
    view_box, width, height = root.get("viewBox"), root.get("width"), root.get("height")
    try:
        if view_box is not None:
            x, y, w, h = map(float, view_box.replace(",", " ").split())
        else:
            x, y, w, h = 0, 0, _px(width), _px(height)
    except ValueError:
        x, y, w, h = 0, 0, 0, 0
    if x or y or not (1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE):  # written so that NaN fails too; inf too
        raise InputError(
            f"the SVG has no usable size: viewBox={view_box!r}, width={width!r}, height={height!r}",
            'give the root <svg> viewBox="0 0 W H" in source-image pixels',
        )
    return round(w), round(h)


@dataclass(frozen=True)
class PathStroke:
    """One stroke path as drawn: its centre line, and its width as a pen or as ink."""

    points: np.ndarray  # (k, 2) Bézier control points, document units
    width: float  # full stroke-width (a pen stroke's); an ink stroke's widths are in `ink`
    ink: np.ndarray | None  # (m,) full widths at knots evenly spaced in the curve parameter, or None
    color: str


def read_path_stroke(path: etree._Element, root: etree._Element) -> PathStroke:
    """The stroke of one `<path>` of a sketch: pen (stroke, stroke-width) or ink (a PowerStroke effect
    in `root`'s defs; its knots must sit evenly spaced, as the engine writes them). InputError for a
    path that is not one Bézier segment."""
    style = _style(path)
    points = _read_stroke(path)
    effect_ref = path.get(_PATH_EFFECT, "")
    effect = root.find(f".//{_PATH_EFFECT}[@id='{effect_ref[1:]}']") if effect_ref.startswith("#") else None
    if effect is None or effect.get("effect") != "powerstroke":
        try:
            width = _px(style.get("stroke-width", "3"))
        except ValueError:
            width = 3.0
        return PathStroke(points, width, None, style.get("stroke", "#000000"))
    try:
        knots = np.array([knot.split(",") for knot in effect.get("offset_points", "").split("|")], dtype=float)
        ink = np.interp(np.linspace(0, 1, max(2, len(knots))), knots[:, 0], 2 * knots[:, 1])
    except ValueError:
        raise InputError(
            f"the ink stroke on line {path.sourceline} has unreadable PowerStroke widths",
            "in Inkscape, select it and remove and re-add its PowerStroke effect",
        ) from None
    return PathStroke(points, float(ink.mean()), ink, style.get("fill", "#000000"))


def _px(length: str | None) -> float:
    """A length in pixels: a number, optionally followed by "px"; ValueError for anything else."""
    return float((length or "").strip().removesuffix("px"))


def _style(element: etree._Element) -> dict[str, str]:
    """Presentation attributes overridden by the `style` attribute, as in CSS."""
    style = dict(element.attrib)
    for declaration in element.get("style", "").split(";"):
        name, colon, value = declaration.partition(":")
        if colon:
            style[name.strip()] = value.strip()
    return style


def _read_stroke(path: etree._Element) -> np.ndarray:
    """(k, 2) control points of a one-segment path: M x y, then one C, Q or L and its points."""
    d = path.get(ORIGINAL_D) or path.get("d", "")  # an ink path's d is its outline: read its centre line
    tokens = _TOKEN.findall(d)
    move, numbers, rest = tokens[:1], tokens[1:3], tokens[3:]
    if rest and rest[0].isalpha():
        command, rest = rest[0], rest[1:]
    else:  # numbers straight after the start point: SVG's implicit lineto
        command = "l" if move == ["m"] else "L"
    numbers += rest
    if (
        not set(_TOKEN.sub("", d)) <= set(" \t\r\n,")
        or move not in (["M"], ["m"])
        or any(token.isalpha() for token in numbers)
        or len(numbers) != 2 * _POINTS.get(command.upper(), 0)
    ):
        raise InputError(
            f"the stroke on line {path.sourceline} is not one Bézier segment: d={d[:80]!r}",
            "each stroke must be M x y followed by one C, Q or L segment; in Inkscape, split "
            "longer paths (Node tool: select inner nodes, Shift+B, then Path > Break Apart)",
        )
    points = np.array(numbers, dtype=float).reshape(-1, 2)
    if command.islower():
        points[1:] += points[0]
    return points
