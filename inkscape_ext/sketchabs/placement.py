"""Putting the engine's sketch exactly over its photo, whatever the document's geometry.

The engine's SVG lives in the photo's pixel space (viewBox 0 0 W H). `pixel_to_document` is the
affine map from those pixels to the document root's user units: the image's x/y/width/height and
preserveAspectRatio, then its own transform and every ancestor's (layers, groups). The strokes are
baked through it (and the inverse of the new layer's parent's transforms), so the new layers carry
no transform and the node tool edits plain coordinates.

A sketch layer sits directly above the layer holding its photo, and records which photo it shows
(`data-sketch-photo`, the image's id), which kind of sketch it is and its variation number: the
link survives saving and reopening, so that running an effect again can replace or vary it. It
also records a fingerprint of what was inserted (sketchabs.fingerprint): only a sketch that is still
exactly as inserted is ever replaced.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import inkex
from lxml import etree

from bridge.sketchlayer import LABEL, PATH, is_layer, layer_of, stroke_width, width_scale
from bridge.svgpath import IMPORTANCE, NS, PREFIX
from bridge.svgtransform import Matrix
from sketchabs.fingerprint import stamp, untouched
from sketchabs.ink import placed_ink

_ALIGN = {"Min": 0.0, "Mid": 0.5, "Max": 1.0}
PHOTO, KIND, VARIATION = "data-sketch-photo", "data-sketch-kind", "data-sketch-variation"


@dataclass(frozen=True)
class SketchLink:
    """What a sketch layer shows: the photo (its image id), the kind of sketch, its variation number."""

    photo: str
    kind: str
    variation: int = 1


def sketches_of(svg, photo_id: str, kind: str) -> dict[int, inkex.Layer]:
    """The layers holding sketches of kind `kind` of the photo `photo_id`, by variation number."""
    found = {}
    for layer in svg.xpath(f"//svg:g[@{PHOTO}]"):
        if layer.get(PHOTO) == photo_id and layer.get(KIND) == kind:
            try:
                found[int(layer.get(VARIATION, "1"))] = layer
            except ValueError:
                continue  # edited by hand into something else: not one of ours any more
    return found


def replaceable(svg, link: SketchLink):
    """The photo's sketch that `link` names, if it is there and untouched since it was inserted
    (None otherwise: nothing to replace, or the designer's work, which is kept)."""
    old = sketches_of(svg, link.photo, link.kind).get(link.variation)
    return old if old is not None and untouched(old) else None


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


def as_matrix(transform: inkex.Transform) -> Matrix:
    """An inkex transform as bridge.svgtransform's (a, b, c, d, e, f), for the rules bridge holds."""
    return (transform.a, transform.b, transform.c, transform.d, transform.e, transform.f)


def insert_sketch(
    svg,
    svg_bytes: bytes,
    photo_element: inkex.Image,
    size: tuple[int, int],
    title: str,
    link: SketchLink,
    replace: bool = False,
) -> inkex.Layer:
    """Add the engine's layers as a new layer `title` over the photo; return it. It goes directly
    above the layer holding the photo, or, with `replace`, takes the place of the photo's sketch of
    the same kind and variation (if it is still there and untouched: see `replaceable`).

    Stroke widths scale with the map (bridge.sketchlayer.width_scale, the rule Refine Sketch reads
    them back with), so the strokes look as in the engine's preview.
    """
    source = etree.fromstring(svg_bytes, parser=etree.XMLParser(resolve_entities=False, no_network=True))
    old = replaceable(svg, link) if replace else None
    anchor = old if old is not None else layer_of(photo_element)
    if anchor is None:  # no layer holds the photo: the sketch goes right above it
        anchor = photo_element
    parent = anchor.getparent()
    matrix = pixel_to_document(photo_element, size)
    if parent.getparent() is not None:  # not the root: the parent's own transforms are undone
        matrix = -parent.composed_transform() @ matrix
    scale = width_scale(as_matrix(matrix))
    top = inkex.Layer.new(title, id=svg.get_unique_id("sketch"))
    top.set(PHOTO, link.photo)
    top.set(KIND, link.kind)
    top.set(VARIATION, str(link.variation))
    for child in filter(is_layer, source):
        top.append(_copy_layer(svg, child, matrix, scale))
    stamp(top)
    anchor.addnext(top)  # above it in z-order
    if old is not None:
        parent.remove(old)
    declare_namespace(svg)
    return top


def declare_namespace(svg) -> None:
    """Declare the project's namespace (the strokes' sketchabs:importance) on the document's root, so
    that it is saved with its own prefix (lxml would make up ns0: on every element otherwise); every
    declaration the document has stays."""
    etree.cleanup_namespaces(svg, top_nsmap={PREFIX: NS}, keep_ns_prefixes=[p for p in svg.nsmap if p])


def _copy_layer(svg, source, matrix: inkex.Transform, scale: float) -> inkex.Layer:
    layer = inkex.Layer.new(source.get(LABEL, "Sketch"), id=svg.get_unique_id("sketch"))
    if source.get("style"):
        layer.set("style", source.get("style"))
    rank = 0
    for child in source:
        if child.tag == PATH:
            rank += 1
            style = inkex.Style(child.get("style", ""))  # the engine writes every stroke's style whole
            style["stroke-width"] = f"{stroke_width(child) * scale:.4g}"
            path = placed_ink(svg, child, matrix, scale)  # an ink stroke keeps its PowerStroke
            if path is None:
                path = inkex.PathElement.new(
                    inkex.Path(child.get("d")).transform(matrix), style=str(style), id=svg.get_unique_id("stroke")
                )
            if child.get(IMPORTANCE) is not None:  # the engine's ranking, for Refine Sketch and the designer
                path.set(IMPORTANCE, child.get(IMPORTANCE))
            path.label = f"stroke {rank:02d}"  # the Objects panel's name; the engine writes the most important first
            layer.append(path)
        elif is_layer(child):
            layer.append(_copy_layer(svg, child, matrix, scale))
        elif child.tag == inkex.addNS("title", "svg"):
            layer.append(copy.deepcopy(child))
    return layer
