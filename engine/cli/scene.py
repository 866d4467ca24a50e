"""`sketch-abstraction scene`: one scene photo to an SVG holding the fidelity x simplicity matrix."""

from __future__ import annotations

import argparse

from engine.cli.here import LocalJob, run_here
from engine.cli.options import add_engine_options, add_scene_options, scene_request


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
    from engine.jobs import SceneResult, run_scene
    from engine.preview import matrix_preview_png
    from engine.scene.weights import require_scene_weights

    def columns(result: SceneResult) -> list[str]:
        return [
            f"{column.part:>10} layer {column.layer:>2}: strokes per row "
            + "/".join(str(int(cell.keep.sum())) for cell in column.cells)
            for column in result.columns
        ]

    job = LocalJob(
        "scene",
        scene_request,
        run_scene,
        matrix_preview_png,
        columns,
        counts=lambda result: f"{len(result.matrix)} cells, ",
        check=require_scene_weights,  # every missing model named at once, before any model loads
    )
    return run_here(args, job)
