"""The job options of the commands that send jobs to an engine (`submit`, `batch`), and the request
one image's job is: a sketch, a scene (--scene) or a refine of a sketch's layer (`submit --refine`)."""

from __future__ import annotations

import argparse

from bridge.params import RefineRequest, SceneRequest, SketchRequest
from engine.cli.client import add_remote_option
from engine.cli.options import (
    add_engine_options,
    add_refine_options,
    add_scene_options,
    add_sketch_options,
    scene_request,
    sketch_request,
)
from engine.cli.sketch_file import SketchFile, refine_job


def add_job_options(parser: argparse.ArgumentParser) -> None:
    """Where jobs run and what they compute (shared by `submit` and `batch`)."""
    add_remote_option(parser)
    parser.add_argument(
        "--scene",
        action="store_true",
        help="scene jobs (CLIPascene): the job options are then those of `scene` "
        "(--layers, --levels, --strokes N, --paper-grid, ...; see `scene --help`)",
    )
    add_sketch_options(parser)
    scene_only = parser.add_argument_group("scene (with --scene)")
    for flag in ("--layers", "--levels"):
        scene_only.add_argument(flag, default=argparse.SUPPRESS, help="see `sketch-abstraction scene --help`")
    scene_only.add_argument(
        "--paper-grid", action="store_true", default=argparse.SUPPRESS, help="see `sketch-abstraction scene --help`"
    )
    add_engine_options(parser)


def job_request(
    args: argparse.Namespace, image, sketch: SketchFile | None = None
) -> SketchRequest | SceneRequest | RefineRequest:
    """The request for one image: a sketch, with --scene a scene with the `scene` command's options,
    with `sketch` (`submit --refine`) a refine of its layer with the `refine` command's options (both
    read again from the command line: they share names with sketch options)."""
    if sketch is None and not args.scene:
        return sketch_request(args, image)
    options = argparse.ArgumentParser(
        prog=f"sketch-abstraction {args.command} --{'scene' if sketch is None else 'refine'}"
    )
    (add_scene_options if sketch is None else add_refine_options)(options)
    job_args, _ = options.parse_known_args(args.argv)
    if sketch is None:
        return scene_request(job_args, image)
    return refine_job(job_args, image, sketch)
