"""`sketch-abstraction refine`: re-optimise one layer of a sketch against its photo, computed in this process.

The layer is read back with bridge.sketchlayer (as the Inkscape effect reads it), refined by the
same engine job the bridge runs (engine.jobs.run_refine), and written back in place: locked paths
untouched, the others updated, the rest of the document as it was.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bridge.params import request_to_json
from bridge.sketchlayer import LayerStrokes, Refined
from engine.cli.client import add_remote_option, client_errors, connect_client, fetch_options, follow_job
from engine.cli.here import compute_here, print_notes
from engine.cli.options import add_engine_options, add_refine_options
from engine.cli.outputs import mask_input, writable_file, writing
from engine.cli.sketch_file import SketchFile, add_layer_option, read_sketch, refine_job, write_refined


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


def _here(args: argparse.Namespace, request, sketch: SketchFile, out: Path) -> int:
    """Refine in this process, as the engine would."""
    from engine.jobs import run_refine
    from engine.svg import sketch_to_svg

    runtime, result = compute_here(args, "refine", request, run_refine)
    with writing(out, "-o"):  # the engine's answer, read as it comes over the bridge
        refined = write_refined(sketch, sketch_to_svg(result.sketch), out)
    if not args.quiet:
        print_notes(result.notes)
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


def summary(layer: LayerStrokes, refined: list[Refined]) -> str:
    """What became of the layer's strokes: how many there are now, locked, added and dropped."""
    locked = sum(layer.locked)
    added = sum(stroke.source < 0 for stroke in refined)
    dropped = len(layer.strokes) + added - len(refined)
    parts = [f"{len(refined)} strokes", f"{locked} locked"]
    parts += [f"{added} added"] if added else []
    parts += [f"{dropped} dropped"] if dropped else []
    return ", ".join(parts)
