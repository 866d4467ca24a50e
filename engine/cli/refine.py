"""`sketch-abstraction refine`: re-optimise one layer of a sketch against its photo, computed in this process.

The layer is read back with bridge.sketchlayer (as the Inkscape effect reads it), refined by the
same engine job the bridge runs (engine.jobs.run_refine), and written back in place: locked paths
untouched, the others updated, the rest of the document as it was.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.errors import InputError
from bridge.files import read_bounded
from bridge.limits import MAX_FILE_BYTES
from bridge.params import RefineRequest, request_to_json
from bridge.sketchlayer import (
    LABEL,
    LayerStrokes,
    Refined,
    is_layer,
    layer_paths,
    read_layer,
    read_result,
    write_back,
)
from bridge.svgpath import stroke_label
from bridge.svgtransform import to_document
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
from engine.cli.remote import add_layer_option, add_remote_option, client_errors


def register(commands) -> None:
    refine = commands.add_parser(
        "refine",
        help="re-optimise a sketch layer against its photo; locked paths stay",
        description="Refine one layer of SKETCH (an SVG written by `sketch`, or saved from Inkscape after "
        "editing) against PHOTO. Paths locked in Inkscape (sodipodi:insensitive) stay exactly as they "
        "are and still count; the others start where they are and are optimised.",
    )
    refine.add_argument("image", help="the photo the sketch was made from")
    refine.add_argument(
        "sketch", help="SVG whose user units are the photo's pixels (viewBox 0 0 W H), as `sketch` writes it"
    )
    add_layer_option(refine)
    refine.add_argument("-o", "--output", help="SVG to write (default: SKETCH's name + -refined.svg, here)")
    refine.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_refine_options(refine)
    add_remote_option(refine)
    add_engine_options(refine)
    refine.set_defaults(run=client_errors(run))


def run(args: argparse.Namespace) -> int:
    from engine.io.image import load_image

    inputs = {"image": args.image, "sketch": args.sketch, **mask_input(args.mask)}
    out = writable_file(args.output or Path(args.sketch).stem + "-refined.svg", "-o", inputs)
    sketch = read_sketch(args.sketch, args.layer, load_image(args.image).size)
    request = refine_job(args, args.image, sketch)
    if args.remote:
        return _on_remote_engine(args, request, sketch, out)
    return _here(args, request, sketch, out)


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


def _here(args: argparse.Namespace, request, sketch: SketchFile, out: Path) -> int:
    """Refine in this process, as the engine would."""
    from engine.budget import check_fits
    from engine.jobs import run_refine
    from engine.runtime import Runtime
    from engine.svg import sketch_to_svg

    runtime = Runtime.create(**engine_settings(args))
    check_fits(runtime, "refine", request)
    bar = ProgressBar(args.quiet)
    try:
        result = run_refine(runtime, request, bar)
    finally:
        bar.close()
    with writing(out, "-o"):  # the engine's answer, read as it comes over the bridge
        refined = write_refined(sketch, sketch_to_svg(result.sketch), out)
    if not args.quiet:
        for note in result.notes:
            print(f"note: {note}", file=sys.stderr)
        print(
            f"{summary(sketch.strokes, refined)}: loss {result.run.start_loss:.4g} -> {result.run.eval_loss:.4g}",
            file=sys.stderr,
        )
        print(
            f"wrote {out} ({result.run.iterations} iterations, {result.seconds:.1f} s on {runtime.device})",
            file=sys.stderr,
        )
    return 0


def _on_remote_engine(args: argparse.Namespace, request, sketch: SketchFile, out: Path) -> int:
    """Refine on the engine of `--remote` (the same request over the bridge), waiting with a progress bar."""
    from engine.cli.remote import connect_client, fetch_options, follow_job

    job, buffers = request_to_json(request)
    with connect_client(args) as client:
        job_id, position = client.submit(job, buffers, Path(args.image).name)
        if position > 0 and not args.quiet:
            print(f"queued, position {position}", file=sys.stderr)
        refined: list[Refined] = []
        code = follow_job(
            client,
            job_id,
            out,
            args.quiet,
            write=lambda svg: refined.extend(write_refined(sketch, svg, out)),
            fetch_with=fetch_options(args.remote, sketch),
        )
    if code == 0 and not args.quiet:
        print(summary(sketch.strokes, refined), file=sys.stderr)
    return code


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


def summary(layer: LayerStrokes, refined: list[Refined]) -> str:
    """What became of the layer's strokes: how many there are now, locked, added and dropped."""
    locked = sum(layer.locked)
    added = sum(stroke.source < 0 for stroke in refined)
    dropped = len(layer.strokes) + added - len(refined)
    parts = [f"{len(refined)} strokes", f"{locked} locked"]
    parts += [f"{added} added"] if added else []
    parts += [f"{dropped} dropped"] if dropped else []
    return ", ".join(parts)
