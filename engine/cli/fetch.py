"""`sketch-abstraction fetch`: write the SVG of a job on the engine, waiting with a progress bar if it
still runs; a refine job's result is written back into its sketch (--refine)."""

from __future__ import annotations

import argparse

from engine.cli.client import add_remote_option, client_errors, connect_client, follow_job, refined_writer
from engine.cli.outputs import writable_file
from engine.cli.sketch_file import add_layer_option, read_sketch


def register(commands) -> None:
    fetch = commands.add_parser("fetch", help="write the SVG of a finished job (waits if it is still running)")
    fetch.add_argument("job_id")
    fetch.add_argument("-o", "--output", required=True, help="SVG to write")
    fetch.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    fetch.add_argument(
        "--refine",
        metavar="SKETCH.svg",
        help="a refine job: write SKETCH with its layer refined, as `refine` does (give the sketch and --layer "
        "given to `submit --refine`); without it, the engine's SVG of the refined strokes",
    )
    add_layer_option(fetch)
    add_remote_option(fetch)
    fetch.set_defaults(run=client_errors(run))


def run(args: argparse.Namespace) -> int:
    out = writable_file(args.output, "-o", {"sketch": args.refine} if args.refine else None)
    sketch = read_sketch(args.refine, args.layer) if args.refine else None
    with connect_client(args) as client:
        return follow_job(client, args.job_id, out, args.quiet, write=refined_writer(sketch, out))
