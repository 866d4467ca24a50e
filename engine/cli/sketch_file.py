"""A sketch file to refine: its SVG read (one layer, in the photo's pixels) and written back with the
layer refined. Used by `refine` and by `submit --refine` / `fetch --refine` alike.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.errors import InputError
from bridge.files import read_bounded
from bridge.limits import MAX_FILE_BYTES
from bridge.params import RefineRequest
from bridge.sketchlayer import LABEL, LayerStrokes, Refined, is_layer, layer_paths, read_layer, read_result, write_back
from bridge.svgpath import stroke_label
from bridge.svgtransform import to_document
from engine.cli.options import refine_request


@dataclass
class SketchFile:
    """A sketch document and the layer to refine, read back into the photo's pixels."""

    path: str
    document: Any  # the whole SVG (lxml), written back with the layer refined
    layer: Any
    strokes: LayerStrokes

    def options(self) -> list[str]:
        """The command-line options that name this sketch and layer again (for a later `fetch`)."""
        layer = self.layer.get("id") or self.layer.get(LABEL)
        return ["--refine", self.path, *(["--layer", layer] if layer else [])]


def add_layer_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--layer", help="label or id of the layer to refine (default: the first visible layer with strokes)"
    )


def read_sketch(path: str, wanted_layer: str | None, photo_size: tuple[int, int] | None = None) -> SketchFile:
    """The layer of the SVG file at `path` (its label or id; None: the first visible one with
    strokes). Its user units must be the photo's pixels (viewBox 0 0 W H): with `photo_size`, the
    sketch is refused unless that is its size (without, when the result comes, by write_refined)."""
    document = _parse(read_bounded(path, "sketch file", MAX_FILE_BYTES), path)
    photo_hint = "give the photo the sketch was made from (the SVG's viewBox is the photo's size)"
    _check_size(document, photo_size or _size(document), "the photo is", photo_hint)  # its own: a usable viewBox
    layer = _find_layer(document, wanted_layer)
    return SketchFile(path, document, layer, read_layer(layer, layer_paths(layer), to_document))


def refine_job(args: argparse.Namespace, image, sketch: SketchFile) -> RefineRequest:
    """The validated refine request for the sketch's layer, with the refine options in `args`."""
    strokes = sketch.strokes
    return refine_request(
        args,
        image,
        tuple(tuple(v for point in stroke for v in point) for stroke in strokes.strokes),
        tuple(strokes.locked),
        tuple(strokes.widths),
    )


def write_refined(sketch: SketchFile, svg: bytes, out: Path) -> list[Refined]:
    """Write the document with the layer refined as the engine's refine SVG `svg` says, to `out`
    (atomically); the refined strokes. InputError for a result that is not a refine of this sketch
    (a fetched job may be another)."""
    from lxml import etree

    from bridge.atomic import write_atomic

    hint = "give the sketch and --layer the refine job was submitted with"
    _check_size(sketch.document, _size(_parse(svg, "the job's result")), "the job's photo is", hint)
    refined, added_width = read_result(svg)
    if not any(0 <= stroke.source < len(sketch.strokes.strokes) for stroke in refined):
        raise InputError("the job's result is not a refine of this sketch's layer", hint)
    write_back(sketch.strokes, refined, added_width, _id_maker(sketch.document))
    sketch.layer.set(LABEL, stroke_label(sketch.layer.get(LABEL, ""), len(layer_paths(sketch.layer))))
    write_atomic(out, etree.tostring(sketch.document, xml_declaration=True, encoding="UTF-8"))
    return refined


def _parse(data: bytes, name: str) -> Any:
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as err:
        raise InputError(
            f"{name} is not an SVG file: the XML does not parse ({err})", "give the sketch's SVG"
        ) from None
    if root.tag != "{http://www.w3.org/2000/svg}svg":
        raise InputError(f"{name} is not an SVG file", "give the sketch's SVG")
    dtd = root.getroottree().docinfo.internalDTD
    if dtd is not None and any(True for _ in dtd.iterentities()):
        # Entities are never expanded (no billion laughs), so a reference would be written back
        # without its declaration: the refined file would not parse.
        raise InputError(
            f"{name} declares XML entities (in its DOCTYPE), which refine does not expand",
            "save it as Plain SVG (Inkscape: File > Save As, Plain SVG), then refine that file",
        )
    return root


def _size(document: Any) -> tuple[int, int]:
    from engine.svg import document_size

    return document_size(document)


def _check_size(document: Any, size: tuple[int, int], other: str, hint: str) -> None:
    width, height = _size(document)
    if (width, height) != size:
        raise InputError(f"the sketch is {width}x{height} px but {other} {size[0]}x{size[1]}", hint)


def _find_layer(document: Any, wanted: str | None) -> Any:
    layers = [g for g in document.iter("{http://www.w3.org/2000/svg}g") if is_layer(g)]
    if wanted is not None:
        found = [g for g in layers if wanted in (g.get(LABEL), g.get("id"))]
        if not found:
            names = ", ".join(repr(g.get(LABEL, g.get("id", ""))) for g in layers if layer_paths(g))
            raise InputError(f"the sketch has no layer {wanted!r}", f"give one of: {names or '(none with strokes)'}")
        return found[0]
    for g in layers:
        if "display:none" not in (g.get("style") or "") and layer_paths(g):
            return g
    raise InputError("the sketch has no visible layer with strokes", "give the layer with --layer LABEL")


def _id_maker(document: Any):
    taken = {element.get("id") for element in document.iter() if element.get("id")}
    count = 0

    def new_id() -> str:
        nonlocal count
        while f"refined-{count}" in taken:
            count += 1
        taken.add(f"refined-{count}")
        return f"refined-{count}"

    return new_id
