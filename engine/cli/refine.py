"""`sketch-abstraction refine`: re-optimise one layer of a sketch against its photo, computed in this process.

The layer is read back with bridge.sketchlayer (as the Inkscape effect reads it), refined by the
same engine job the bridge runs (engine.jobs.run_refine), and written back in place: locked paths
untouched, the others updated, the rest of the document as it was.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bridge.errors import InputError
from bridge.files import read_bounded
from bridge.limits import MAX_FILE_BYTES
from bridge.sketchlayer import IDENTITY, LABEL, LayerStrokes, is_layer, layer_paths, read_layer, read_result, write_back
from bridge.svgpath import stroke_label
from engine.cli.options import (
    add_engine_options,
    add_refine_options,
    engine_settings,
    mask_input,
    refine_request,
    writable_file,
    writing,
)
from engine.cli.progress_bar import ProgressBar

_TRANSFORM_HINT = (
    "in Inkscape, use Extensions > Sketch Abstraction > Refine Sketch (it maps any geometry), or apply the transform"
)


def register(commands) -> None:
    refine = commands.add_parser(
        "refine",
        help="re-optimise a sketch layer against its photo; locked paths stay",
        description="Refine one layer of SKETCH (an SVG written by `sketch`, or saved from Inkscape after "
        "editing) against PHOTO. Paths locked in Inkscape (sodipodi:insensitive) stay exactly as they "
        "are and still count; the others start where they are and are optimised.",
    )
    refine.add_argument("image", help="the photo the sketch was made from")
    refine.add_argument("sketch", help="SVG in the photo's pixel space (viewBox 0 0 W H), as `sketch` writes it")
    refine.add_argument(
        "--layer", help="label or id of the layer to refine (default: the first visible layer with strokes)"
    )
    refine.add_argument("-o", "--output", help="SVG to write (default: SKETCH's name + -refined.svg, here)")
    refine.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_refine_options(refine)
    add_engine_options(refine)
    refine.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from lxml import etree

    from bridge.atomic import write_atomic
    from engine.budget import check_fits
    from engine.io.image import load_image
    from engine.jobs import run_refine
    from engine.runtime import Runtime
    from engine.svg import document_size, sketch_to_svg

    inputs = {"image": args.image, "sketch": args.sketch, **mask_input(args.mask)}
    out = writable_file(args.output or Path(args.sketch).stem + "-refined.svg", "-o", inputs)
    document = _parse(read_bounded(args.sketch, "sketch file", MAX_FILE_BYTES), args.sketch)
    layer = _find_layer(document, args.layer)
    layer_data = read_layer(layer, _untransformed(layer_paths(layer)), lambda path: IDENTITY)
    photo = load_image(args.image)
    width, height = document_size(document)
    if (width, height) != photo.size:
        raise InputError(
            f"the sketch is {width}x{height} px but the photo is {photo.width}x{photo.height}",
            "give the photo the sketch was made from (the SVG's viewBox is the photo's size)",
        )
    request = refine_request(
        args,
        args.image,
        tuple(tuple(v for point in stroke for v in point) for stroke in layer_data.strokes),
        tuple(layer_data.locked),
        tuple(layer_data.widths),
    )
    runtime = Runtime.create(**engine_settings(args))
    check_fits(runtime, "refine", request)
    bar = ProgressBar(args.quiet)
    try:
        result = run_refine(runtime, request, bar)
    finally:
        bar.close()
    refined, added_width = read_result(sketch_to_svg(result.sketch))  # the engine's answer, as over the bridge
    write_back(layer_data, refined, added_width, _id_maker(document))
    layer.set(LABEL, stroke_label(layer.get(LABEL, ""), len(layer_paths(layer))))
    with writing(out, "-o"):
        write_atomic(out, etree.tostring(document, xml_declaration=True, encoding="UTF-8"))
    if not args.quiet:
        for note in result.notes:
            print(f"note: {note}", file=sys.stderr)
        print(_summary(layer_data, result), file=sys.stderr)
        print(
            f"wrote {out} ({result.run.iterations} iterations, {result.seconds:.1f} s on {runtime.device})",
            file=sys.stderr,
        )
    return 0


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
    return root


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


def _untransformed(paths: list[Any]) -> list[Any]:
    """The paths, when neither they nor a group around them has a transform: the file's user units
    are then the photo's pixels."""
    for path in paths:
        for element in [path, *path.iterancestors()]:
            if element.get("transform"):
                raise InputError(
                    f"path '{path.get('id', '?')}' (line {path.sourceline}) or a group around it has a transform",
                    _TRANSFORM_HINT,
                )
    return paths


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


def _summary(layer: LayerStrokes, result) -> str:
    run, locked = result.run, sum(layer.locked)
    added = int((run.sources < 0).sum())
    dropped = len(layer.strokes) + added - len(run.points)
    parts = [f"{len(run.points)} strokes", f"{locked} locked"]
    parts += [f"{added} added"] if added else []
    parts += [f"{dropped} dropped"] if dropped else []
    return f"{', '.join(parts)}: loss {run.start_loss:.4g} -> {run.eval_loss:.4g}"
