"""`sketch-abstraction sketch`: one object photo to a layered SVG, computed in this process."""

from __future__ import annotations

import argparse

from engine.cli.here import LocalJob, run_here
from engine.cli.options import add_engine_options, add_sketch_options, sketch_request


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
    from engine.jobs import SketchResult, run_sketch
    from engine.preview import preview_png

    def levels(result: SketchResult) -> list[str]:
        return [
            f"{level.strokes:>4} strokes: loss {level.eval_loss:.4g} (seed {level.seed}, "
            f"best at iteration {level.best_iteration})"
            for level in result.levels
        ]

    return run_here(args, LocalJob("sketch", sketch_request, run_sketch, preview_png, levels))
