"""`sketch-abstraction scene`: one scene photo to an SVG holding the fidelity x simplicity matrix."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.cli.options import (
    add_engine_options,
    add_scene_options,
    distinct_outputs,
    engine_settings,
    mask_input,
    scene_request,
    writable_file,
    writing,
)
from engine.cli.progress_bar import ProgressBar


def register(commands) -> None:
    scene = commands.add_parser(
        "scene",
        help="sketch a scene as a fidelity x simplicity matrix (CLIPascene)",
        description="Sketch IMAGE with CLIPascene: one SVG layer per fidelity column, holding one layer "
        "per simplicity row (a cell) with Background and Object sublayers; one cell visible.",
    )
    scene.add_argument("image", help="PNG, JPEG, WebP, TIFF or BMP")
    scene.add_argument("-o", "--output", help="SVG to write (default: IMAGE's name + .svg, here)")
    scene.add_argument(
        "--preview",
        help="also write a PNG contact sheet of the matrix over the image (columns: fidelity, rows: simplicity)",
    )
    scene.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_scene_options(scene)
    add_engine_options(scene)
    scene.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from bridge.atomic import write_atomic
    from engine.budget import check_fits
    from engine.jobs import run_scene
    from engine.preview import matrix_preview_png
    from engine.runtime import Runtime
    from engine.scene.weights import require_scene_weights
    from engine.svg import write_svg

    inputs = {"image": args.image, **mask_input(args.mask)}
    out = writable_file(args.output or Path(args.image).stem + ".svg", "-o", inputs)
    if args.preview:
        writable_file(args.preview, "--preview", inputs)
        distinct_outputs({"-o": out, "--preview": args.preview})
    request = scene_request(args, args.image)
    runtime = Runtime.create(**engine_settings(args))
    require_scene_weights(runtime, request)  # every missing model named at once, before any model loads
    check_fits(runtime, "scene", request)
    bar = ProgressBar(args.quiet)
    try:
        result = run_scene(runtime, request, bar)
    finally:
        bar.close()
    with writing(out, "-o"):
        write_svg(out, result.sketch)
    if args.preview:
        with writing(args.preview, "--preview"):
            write_atomic(args.preview, matrix_preview_png(request.image, result.sketch))
    if not args.quiet:
        for note in result.notes:
            print(f"note: {note}", file=sys.stderr)
        for column in result.columns:
            counts = "/".join(str(int(cell.keep.sum())) for cell in column.cells)
            print(f"{column.part:>10} layer {column.layer:>2}: strokes per row {counts}", file=sys.stderr)
        written = f"{out} and {args.preview}" if args.preview else out
        print(
            f"wrote {written} ({len(result.matrix)} cells, {result.iterations} iterations, "
            f"{result.seconds:.1f} s on {runtime.device})",
            file=sys.stderr,
        )
    return 0
