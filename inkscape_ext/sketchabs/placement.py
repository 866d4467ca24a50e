"""Putting the engine's sketch exactly over its photo, whatever the document's geometry.

The engine's SVG lives in the photo's pixel space (viewBox 0 0 W H). `pixel_to_document` is the
affine map from those pixels to the document root's user units: the image's x/y/width/height and
preserveAspectRatio, then its own transform and every ancestor's (layers, groups). The strokes are
baked through it, so the new layers carry no transform and the node tool edits plain coordinates.
"""

from __future__ import annotations

import copy
import math

import inkex
from lxml import etree

_ALIGN = {"Min": 0.0, "Mid": 0.5, "Max": 1.0}


def pixel_to_document(image: inkex.Image, size: tuple[int, int]) -> inkex.Transform:
    """Affine map from the photo's pixel coordinates to document root user units."""
    W, H = size
    x, y, w, h = image.left, image.top, image.width, image.height
    if w <= 0 or h <= 0:  # SVG 2 auto-sizing: the image's own pixel size
        w, h = (w if w > 0 else W), (h if h > 0 else H)
    align, _, mode = (image.get("preserveAspectRatio") or "xMidYMid meet").strip().partition(" ")
    if align == "none":
        sx, sy, tx, ty = w / W, h / H, x, y
    else:
        s = max(w / W, h / H) if mode.strip() == "slice" else min(w / W, h / H)
        fx, fy = _ALIGN.get(align[1:4], 0.5), _ALIGN.get(align[5:8], 0.5)
        sx = sy = s
        tx, ty = x + fx * (w - W * s), y + fy * (h - H * s)
    return image.composed_transform() @ inkex.Transform(translate=(tx, ty)) @ inkex.Transform(scale=(sx, sy))


def insert_sketch(svg, svg_bytes: bytes, photo_element: inkex.Image, size: tuple[int, int], title: str) -> inkex.Layer:
    """Add the engine's layers as a new top-level layer `title` over the photo; return it.

    Stroke widths scale with the map (by the square root of its determinant, exact for any
    rotation and uniform scale), so the strokes look as in the engine's preview.
    """
    source = etree.fromstring(svg_bytes, parser=etree.XMLParser(resolve_entities=False, no_network=True))
    matrix = pixel_to_document(photo_element, size)
    width_scale = math.sqrt(abs(matrix.a * matrix.d - matrix.b * matrix.c))
    top = inkex.Layer.new(title, id=svg.get_unique_id("sketch"))
    for child in filter(_is_layer, source):
        top.append(_copy_layer(svg, child, matrix, width_scale))
    svg.append(top)
    return top


def _is_layer(element) -> bool:
    return element.tag == inkex.addNS("g", "svg") and element.get(inkex.addNS("groupmode", "inkscape")) == "layer"


def _copy_layer(svg, source, matrix: inkex.Transform, width_scale: float) -> inkex.Layer:
    layer = inkex.Layer.new(source.get(inkex.addNS("label", "inkscape"), "Sketch"), id=svg.get_unique_id("sketch"))
    if source.get("style"):
        layer.set("style", source.get("style"))
    for child in source:
        if child.tag == inkex.addNS("path", "svg"):
            style = inkex.Style(child.get("style", ""))  # the engine writes every stroke's style whole
            style["stroke-width"] = f"{float(style.get('stroke-width', 1)) * width_scale:.4g}"
            path = inkex.PathElement.new(
                inkex.Path(child.get("d")).transform(matrix), style=str(style), id=svg.get_unique_id("stroke")
            )
            layer.append(path)
        elif _is_layer(child):
            layer.append(_copy_layer(svg, child, matrix, width_scale))
        elif child.tag == inkex.addNS("title", "svg"):
            layer.append(copy.deepcopy(child))
    return layer
