"""A job computed in this process, as the engine would compute it: what `sketch`, `scene` and
`refine` (without --remote) share. `run_here` is the whole of `sketch` and `scene`; a LocalJob holds
what differs between them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.atomic import write_atomic
from engine.cli.options import engine_settings
from engine.cli.outputs import distinct_outputs, mask_input, writable_file, writing
from engine.cli.progress_bar import ProgressBar

if TYPE_CHECKING:
    from engine.progress import Progress
    from engine.runtime import Runtime
    from engine.strokes import Sketch


@dataclass(frozen=True)
class LocalJob:
    """What one command computes and says. Request and result are a kind's (engine.jobs)."""

    kind: str  # the request kind, as engine.budget.check_fits sizes it
    request: Callable[[argparse.Namespace, str], Any]  # the parsed options -> the validated request
    compute: Callable[[Runtime, Any, Callable[[Progress], None]], Any]  # engine.jobs' run_<kind>
    preview_png: Callable[[Any, Sketch], bytes]  # (the photo, the result's sketch) -> the --preview PNG
    findings: Callable[[Any], list[str]]  # lines on what the run found (per level, per column), after its notes
    counts: Callable[[Any], str] = lambda result: ""  # what the closing line counts before the iterations
    check: Callable[[Runtime, Any], None] | None = None  # a check before any model loads (runtime, request)


def run_here(args: argparse.Namespace, job: LocalJob) -> int:
    """Sketch `args.image` into `args.output` (and `args.preview`): every output checked before any
    work, then the request, the device's room for it, the run with a progress bar, the files."""
    from engine.svg import write_svg

    inputs = {"image": args.image, **mask_input(args.mask)}
    out = writable_file(args.output or Path(args.image).stem + ".svg", "-o", inputs)
    if args.preview:
        writable_file(args.preview, "--preview", inputs)
        distinct_outputs({"-o": out, "--preview": args.preview})
    request = job.request(args, args.image)
    runtime, result = compute_here(args, job.kind, request, job.compute, job.check)
    with writing(out, "-o"):
        write_svg(out, result.sketch)
    if args.preview:
        with writing(args.preview, "--preview"):
            write_atomic(args.preview, job.preview_png(request.image, result.sketch))
    if not args.quiet:
        print_notes(result.notes)
        for line in job.findings(result):
            print(line, file=sys.stderr)
        written = f"{out} and {args.preview}" if args.preview else out
        print(
            f"wrote {written} ({job.counts(result)}{result.iterations} iterations, "
            f"{result.seconds:.1f} s on {runtime.device})",
            file=sys.stderr,
        )
    return 0


def compute_here(
    args: argparse.Namespace,
    kind: str,
    request: Any,
    compute: Callable[[Runtime, Any, Callable[[Progress], None]], Any],
    check: Callable[[Runtime, Any], None] | None = None,
) -> tuple[Runtime, Any]:
    """The runtime of the engine options in `args` and `compute`'s result for `request` on it, with a
    progress bar (unless --quiet); DeviceError before any work when the job will not fit."""
    from engine.budget import check_fits
    from engine.runtime import Runtime

    runtime = Runtime.create(**engine_settings(args))
    if check is not None:
        check(runtime, request)
    check_fits(runtime, kind, request)
    bar = ProgressBar(args.quiet)
    try:
        return runtime, compute(runtime, request, bar)
    finally:
        bar.close()


def print_notes(notes: list[str]) -> None:
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
