"""`sketch-abstraction submit`: sketch images on the running engine (started if needed), with a
progress bar per job, or queue them (--detach) and return; `submit --refine` refines a sketch's layer."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bridge.errors import InputError
from bridge.params import request_to_json
from engine.cli.client import (
    client_errors,
    connect_client,
    fetch_options,
    follow_job,
    preview_path,
    printable,
    refined_writer,
    report_failure,
)
from engine.cli.job_options import add_job_options, job_request
from engine.cli.outputs import mask_input, same_file, writable_file
from engine.cli.sketch_file import SketchFile, add_layer_option, read_sketch


def register(commands) -> None:
    submit = commands.add_parser(
        "submit",
        help="sketch images on the running engine (starts it if needed)",
        description="Send IMAGE(s) to the engine, show progress, write one SVG each.",
    )
    submit.add_argument("images", nargs="+", metavar="IMAGE")
    out = submit.add_mutually_exclusive_group()
    out.add_argument("-o", "--output", help="SVG to write (one image only; default: IMAGE's name + .svg, here)")
    out.add_argument("--out-dir", help="folder for the SVGs, one per image, named after it")
    submit.add_argument(
        "--detach", action="store_true", help="queue the jobs, print their ids and return; get results with `fetch`"
    )
    submit.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    submit.add_argument(
        "--preview-every",
        type=float,
        metavar="SECONDS",
        help="while a job runs, keep OUTPUT.preview.png (the best strokes so far over the faded photo; a "
        "scene: its first fidelity column) up to date, refreshed at most this often (at least 0.5)",
    )
    add_job_options(submit)
    refine = submit.add_argument_group("refine (with --refine)")
    refine.add_argument(
        "--refine",
        metavar="SKETCH.svg",
        help="refine a layer of this sketch of IMAGE (one) instead of sketching it; the job options are then "
        "those of `refine` (--add N, --simplify N, --iterations, ...; see `refine --help`); the SVG written is "
        "SKETCH with the layer refined (default: SKETCH's name + -refined.svg, here)",
    )
    add_layer_option(refine)
    for flag in ("--add", "--simplify"):
        refine.add_argument(flag, metavar="N", default=argparse.SUPPRESS, help="see `sketch-abstraction refine --help`")
    submit.set_defaults(run=client_errors(run))


def run(args: argparse.Namespace) -> int:
    from bridge.client import JobFailed

    sketch = _sketch_to_refine(args)
    outs = _outputs(args)
    if args.preview_every is not None and not 0.5 <= args.preview_every <= 3600:  # NaN and inf fail too
        raise InputError(
            f"--preview-every must be at least 0.5 seconds and at most 3600, got {args.preview_every}", "e.g. 3"
        )
    encoded = [request_to_json(job_request(args, image, sketch)) for image in args.images]  # all checked first
    codes = []  # exit codes of the images that failed, in order
    queued = []  # (image, job id, output)
    with connect_client(args, start=True) as client:
        for image, (job, buffers), out in zip(args.images, encoded, outs):
            prefix = f"{printable(Path(image).name)}: "
            try:
                job_id, position = client.submit(job, buffers, Path(image).name, args.preview_every)
            except JobFailed as err:  # refused (e.g. the queue is full): the images sent go on
                codes.append(report_failure(prefix, err))
                continue
            queued.append((image, job_id, out))
            if args.detach:
                print(f"{job_id}  {image}")
            elif position > 0 and not args.quiet:  # later moves come as queue_update messages
                print(f"{prefix}queued, position {position}", file=sys.stderr)
        if not args.detach:
            codes += [
                code
                for image, job_id, out in queued
                if (
                    code := follow_job(
                        client,
                        job_id,
                        out,
                        args.quiet,
                        f"{printable(Path(image).name)}: ",
                        args.preview_every is not None,
                        refined_writer(sketch, out),
                        fetch_options(args.remote, sketch),
                    )
                )
            ]
    return codes[0] if codes else 0  # one exit code per cause, as `sketch` would exit


def _sketch_to_refine(args: argparse.Namespace) -> SketchFile | None:
    """The sketch `submit --refine` refines, None without --refine."""
    if not args.refine:
        return None
    if args.scene or len(args.images) != 1:
        raise InputError(
            "--refine refines a sketch of one photo: give exactly one IMAGE, and no --scene",
            f"sketch-abstraction submit --refine {args.refine} PHOTO_IT_WAS_MADE_FROM",
        )
    from engine.io.image import load_image

    return read_sketch(args.refine, args.layer, load_image(args.images[0]).size)


def _outputs(args: argparse.Namespace) -> list[Path]:
    images = [Path(p) for p in args.images]
    if args.output and len(images) > 1:
        raise InputError("-o names one SVG but several images were given", "use --out-dir DIR instead")
    names = [Path(args.refine).stem + "-refined.svg"] if args.refine else [p.stem + ".svg" for p in images]
    if args.out_dir:
        folder = Path(args.out_dir)
        if not folder.is_dir():
            raise InputError(f"--out-dir {folder} is not a folder", "create it first")
        outs = [folder / name for name in names]
    else:
        outs = [Path(args.output)] if args.output else [Path(name) for name in names]
    if len(set(outs)) != len(outs):
        raise InputError("two images would write the same SVG (same file name)", "rename one, or submit them apart")
    inputs = {"image": args.images[0]} if len(images) == 1 else {f"image {p}": p for p in args.images}
    inputs.update(mask_input(args.mask))
    inputs.update({"sketch": args.refine} if args.refine else {})
    outs = [writable_file(o, "-o" if args.output else "--out-dir", inputs) for o in outs]
    if args.preview_every is not None:  # OUTPUT.preview.png is written too: it must replace nothing of these either
        written = {f"input {role}": source for role, source in inputs.items()}
        written.update({f"output {o}": o for o in outs})
        for out in outs:
            preview = writable_file(preview_path(out), "-o")
            clash = next((role for role, source in written.items() if same_file(preview, source)), None)
            if clash:
                raise InputError(
                    f"the live preview {preview.name} (next to {out.name}) is the {clash}: it would be replaced",
                    "pass -o with another name (the preview is OUTPUT.preview.png), or leave out --preview-every",
                )
    return outs
