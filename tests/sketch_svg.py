"""Tests read the engine's SVGs back as a Sketch with the product's one reader: each layer's strokes
through bridge.sketchlayer and bridge.svgpath, as `refine` and the Inkscape extension read them
(engine/svg.py only writes). Layers nest as the engine writes them (a scene's columns hold cells);
the locked "Source image" layer is left out."""

from __future__ import annotations

import numpy as np
from lxml import etree

from bridge.sketchlayer import LABEL, ORIGINAL_D, is_layer, layer_paths, read_layer
from bridge.svgpath import IMPORTANCE
from bridge.svgtransform import to_document
from engine.strokes import Sketch, StrokeLayer, elevate
from engine.svg import SOURCE_IMAGE_LABEL, document_size


def svg_to_sketch(data: bytes) -> Sketch:
    """The sketch an SVG document holds, in its user units (the photo's pixels)."""
    root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))
    width, height = document_size(root)
    return Sketch(width, height, tuple(_layers(root)))


def _layers(element) -> list[StrokeLayer]:
    """The layers in `element`, looking through plain groups, not into layers."""
    found = []
    for child in element:
        if is_layer(child):
            if child.get(LABEL) != SOURCE_IMAGE_LABEL:
                found.append(_layer(child))
        elif child.tag == "{http://www.w3.org/2000/svg}g":
            found += _layers(child)
    return found


def _layer(group) -> StrokeLayer:
    paths = layer_paths(group)
    strokes = read_layer(group, paths, to_document)
    k = max((len(stroke) for stroke in strokes.strokes), default=4)
    points = np.array([elevate(np.array(stroke, dtype=float), k) for stroke in strokes.strokes]).reshape(-1, k, 2)
    scores = [path.get(IMPORTANCE) for path in paths]
    look = {}
    if paths:  # the first path's: the engine writes one pen or ink for a layer
        colour = "fill" if paths[0].get(ORIGINAL_D) else "stroke"
        look = {"width": strokes.widths[0], "color": _style(paths[0]).get(colour, "#000000")}
    return StrokeLayer(
        label=group.get(LABEL, group.get("id", "")),
        points=points,
        visible="display:none" not in (group.get("style") or ""),
        sublayers=tuple(_layers(group)),
        key=group.get("id", ""),
        importance=tuple(float(s) for s in scores) if scores and None not in scores else (),
        **look,
    )


def _style(element) -> dict[str, str]:
    """Presentation attributes overridden by the `style` attribute, as in CSS."""
    style = dict(element.attrib)
    for declaration in (element.get("style") or "").split(";"):
        name, colon, value = declaration.partition(":")
        if colon:
            style[name.strip()] = value.strip()
    return style
