"""What the commands that talk to an engine share: connecting, waiting for a job with a progress
bar, writing its result, and reporting a failure the way `sketch` would exit on it.

Used by `submit`, `fetch`, `cancel`, `status`, `stop`, `batch` and `refine --remote`. Torch-free:
these commands use bridge.client only, so they start in a blink; the engine keeps its models loaded.
"""

from __future__ import annotations

import argparse
import functools
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from bridge.atomic import write_atomic
from bridge.errors import EngineError, InputError, exit_code_for
from engine.cli.options import engine_settings
from engine.cli.outputs import writing
from engine.cli.progress_bar import ProgressBar
from engine.progress import Progress

if TYPE_CHECKING:
    from bridge.client import EngineClient, JobFailed
    from bridge.protocol import Message
    from engine.cli.sketch_file import SketchFile

REMOTE_ENV = "SKETCH_ABSTRACTION_REMOTE"  # a remote connection file the client commands use by default


class ClientFailure(EngineError):
    """A bridge.client error, shown by main() like any engine error."""

    exit_code = 1


def client_errors(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Run `command`, turning the client's errors into engine errors that main() prints."""

    def run(args: argparse.Namespace) -> int:
        from bridge.client import ClientError

        try:
            return command(args)
        except ClientError as err:
            raise ClientFailure(err.message, err.hint) from None
        except TimeoutError as err:
            raise ClientFailure(str(err), "fetch the job later with `sketch-abstraction fetch`") from None

    return run


def add_remote_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--remote",
        metavar="FILE",
        default=os.environ.get(REMOTE_ENV) or None,
        help="use the engine of this remote connection file (from `keys export` on a shared GPU machine) "
        f"instead of this computer's (default: ${REMOTE_ENV} if set)",
    )


def connect_client(args: argparse.Namespace | None = None, start: bool = False) -> EngineClient:
    """A client of this computer's engine (started if `start` and none runs), or of the remote
    engine of `args.remote`. A remote engine runs the models its administrator chose."""
    from bridge.client import EngineClient
    from bridge.launcher import engine_command

    remote = getattr(args, "remote", None)
    if remote:
        return EngineClient.connect(remote=remote)
    if not start:
        return EngineClient.connect(start=None)
    assert args is not None, "starting an engine takes the engine options"
    client = EngineClient.connect(start=engine_command(sys.executable, **engine_settings(args)))
    status = client.status()
    running = {"models": status["models"], "renderer": status.get("renderer", "ours")}  # older engines: ours
    for option, value in running.items():
        if value != getattr(args, option):
            client.close()
            raise InputError(
                f"the running engine uses {value} {option}, not {getattr(args, option)}",
                f"pass --{option} {value}, or stop it (`sketch-abstraction stop`) to start a new one",
            )
    return client


def running_client(args: argparse.Namespace | None = None) -> EngineClient | None:
    """A client of the running engine, or None when none runs (never starts one)."""
    from bridge.client import EngineUnavailable

    try:
        return connect_client(args)
    except EngineUnavailable as err:
        if err.code == "not_running":
            return None
        raise  # running but not answering, or without a connection file: that is not "not running"


def report_failure(prefix: str, err: JobFailed) -> int:
    """Report a job the engine refused or failed; its exit code (the one `sketch` gives that cause)."""
    print(f"{prefix}error: {err.message}\n  fix: {err.hint}", file=sys.stderr)
    return exit_code_for(err.code)


def follow_job(
    client: EngineClient,
    job_id: str,
    out: Path,
    quiet: bool,
    prefix: str = "",
    previews: bool = False,
    write: Callable[[bytes], object] | None = None,
    fetch_with: str = "",
) -> int:
    """Wait for one job with a progress bar and write its SVG; 0, or the exit code of its failure.
    With `previews`, each live preview the engine sends replaces OUT.preview.png. `write(svg)`
    writes the result to `out` (default: the engine's SVG as it is; a refine writes the document back).
    `fetch_with`: the options a later `fetch` of the job needs (fetch_options), for the messages."""
    later = f"sketch-abstraction fetch {job_id}{fetch_with} -o {shlex.quote(str(out))}"
    from bridge.client import JobFailed

    bar = ProgressBar(quiet, prefix)

    def show(msg: Message) -> None:
        if msg.msg_type == "queue_update" and msg.content["position"] > 0 and not quiet:  # 0: it starts
            print(f"{prefix}queued, position {msg.content['position']}", file=sys.stderr)
        elif msg.msg_type == "progress":
            c = msg.content
            bar(Progress(c["stage"], c["iteration"], c["total"], c.get("loss"), c.get("detail", ""), c.get("eta_s")))
            if previews and msg.buffers:
                write_atomic(preview_path(out), msg.buffers[0])

    try:
        result = client.wait(job_id, on_message=show)
    except JobFailed as err:
        bar.close()
        return report_failure(prefix, err)
    except KeyboardInterrupt:
        bar.close()
        print(
            f"{prefix}job {job_id} goes on in the engine; later: {later}",
            file=sys.stderr,
        )
        raise
    bar.close()
    try:
        with writing(out, "-o"):
            (write or functools.partial(write_atomic, out))(result.svg)
    except EngineError as err:  # the engine keeps the result: say how to get it once there is room
        print(
            f"{prefix}error: {err.message}\n  fix: {err.hint}; then `{later}` (the engine keeps the result for a day)",
            file=sys.stderr,
        )
        return err.exit_code
    if not quiet:
        for note in result.notes:
            print(f"{prefix}note: {note}", file=sys.stderr)
        print(f"{prefix}wrote {out} ({result.seconds:.1f} s in the engine)", file=sys.stderr)
    return 0


def refined_writer(sketch: SketchFile | None, out: Path) -> Callable[[bytes], object] | None:
    """How follow_job writes a refine's result: `sketch` with its layer refined (None: the SVG as it is)."""
    if sketch is None:
        return None
    from engine.cli.sketch_file import write_refined

    return lambda svg: write_refined(sketch, svg, out)


def fetch_options(remote: str | None, sketch: SketchFile | None = None) -> str:
    """The options a later `fetch` of a job needs (quoted, each after a space): the engine that has
    it, and for a refine the sketch its result is written back into."""
    words = (["--remote", remote] if remote else []) + (sketch.options() if sketch else [])
    return "".join(f" {shlex.quote(word)}" for word in words)


def preview_path(out: Path) -> Path:
    """Where `submit --preview-every` keeps the live preview of the job writing `out`."""
    return out.with_name(out.stem + ".preview.png")


def printable(text: str) -> str:
    """`text` with control characters escaped: a file name must not drive the terminal (an ESC
    sequence can retitle the window, hide text or move the cursor)."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}" for c in text)
