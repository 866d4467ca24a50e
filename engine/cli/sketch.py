"""`sketch-abstraction sketch`: one object photo to a layered SVG, computed in this process."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.cli.options import (
    add_engine_options,
    add_sketch_options,
    distinct_outputs,
    engine_settings,
    mask_input,
    sketch_request,
    writable_file,
    writing,
)
from engine.cli.progress_bar import ProgressBar


def register(commands) -> None:
    sketch = commands.add_parser(
        "sketch",
        help="sketch an object photo at several abstraction levels",
        description="Sketch IMAGE with CLIPasso; one SVG layer per stroke count.",
    )
    sketch.add_argument("image", help="PNG, JPEG, WebP, TIFF or BMP")
    sketch.add_argument("-o", "--output", help="SVG to write (default: IMAGE's name + .svg, here)")
    sketch.add_argument("--preview", help="also write a PNG preview of every level over the image")
    sketch.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_sketch_options(sketch)
    add_engine_options(sketch)
    sketch.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from engine.budget import check_fits
    from engine.jobs import run_sketch
    from engine.runtime import Runtime
    from engine.svg import write_svg

    inputs = {"image": args.image, **mask_input(args.mask)}
    out = writable_file(args.output or Path(args.image).stem + ".svg", "-o", inputs)
    if args.preview:
        writable_file(args.preview, "--preview", inputs)
        distinct_outputs({"-o": out, "--preview": args.preview})
    request = sketch_request(args, args.image)
    runtime = Runtime.create(**engine_settings(args))
    check_fits(runtime, "sketch", request)
    bar = ProgressBar(args.quiet)
    try:
        result = run_sketch(runtime, request, bar)
    finally:
        bar.close()
    with writing(out, "-o"):
        write_svg(out, result.sketch)
    if args.preview:
        from engine.preview import write_preview

        with writing(args.preview, "--preview"):
            write_preview(args.preview, request.image, result.sketch)
    if not args.quiet:
        for note in result.notes:
            print(f"note: {note}", file=sys.stderr)
        for level in result.levels:
            print(
                f"{level.strokes:>4} strokes: loss {level.eval_loss:.4g} (seed {level.seed}, "
                f"best at iteration {level.best_iteration})",
                file=sys.stderr,
            )
        print(
            f"wrote {out} ({result.iterations} iterations, {result.seconds:.1f} s on {runtime.device})", file=sys.stderr
        )
    return 0
