"""The engine as a service: `serve` runs it; `submit`, `fetch`, `cancel`, `status`, `stop` talk to it.

The talking commands use bridge.client only, so they start in a blink and never load torch; the
engine they talk to keeps its models loaded between jobs.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import os
import shlex
import signal
import sys
import time
from pathlib import Path

from bridge.atomic import write_atomic
from bridge.errors import EngineError, InputError, exit_code_for
from bridge.params import request_to_json
from bridge.protocol import MAX_MESSAGE_BYTES
from engine.cli.keys import parse_address
from engine.cli.options import (
    add_engine_options,
    add_refine_options,
    add_scene_options,
    add_sketch_options,
    engine_settings,
    mask_input,
    same_file,
    scene_request,
    sketch_request,
    writable_file,
    writing,
)
from engine.cli.progress_bar import ProgressBar
from engine.progress import Progress

STOP_WAIT_S = 10.0  # an engine not answering `stop` gets this long to exit on SIGTERM
RECENT_S = 86_400.0  # `status` lists finished jobs this recent (all with --all)
MAX_MESSAGE_MB = 4096  # queued images: up to twice this per client, 8 times in all (ServerOptions)
REMOTE_ENV = "SKETCH_ABSTRACTION_REMOTE"  # a remote connection file the client commands use by default


class ClientFailure(EngineError):
    """A bridge.client error, shown by main() like any engine error."""

    exit_code = 1


def register(commands) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the engine: keeps models loaded and serves jobs over ZeroMQ",
        description="Run the persistent engine for the Inkscape extension and `submit`.",
    )
    add_engine_options(serve)
    group = serve.add_argument_group("server")
    group.add_argument(
        "--idle-timeout",
        type=float,
        metavar="SECONDS",
        help="exit after this long with no job and no request (default: never)",
    )
    group.add_argument(
        "--max-message-mb",
        type=float,
        default=MAX_MESSAGE_BYTES / 2**20,
        help=f"largest request accepted, image included (default: {MAX_MESSAGE_BYTES // 2**20})",
    )
    group.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="also serve the network there, encrypted (CurveZMQ) and only to the keys allowed with "
        "`sketch-abstraction keys` (e.g. 0.0.0.0:5555); default: this computer only",
    )
    group.add_argument(
        "--workers",
        default="local",
        metavar="local|ray|ray://HEAD:PORT",
        help="where jobs run: in this process (default), or on Ray actors, one per GPU, each with the models "
        "loaded (ray: a local Ray; ray://HEAD:PORT: a cluster). Needs the cluster extra",
    )
    group.add_argument(
        "--ray-cpu-actors",
        type=int,
        default=2,
        metavar="N",
        help="with --workers ray on a cluster without GPUs: this many CPU actors (default: 2)",
    )
    group.add_argument(
        "--keep-hours",
        type=float,
        default=24,
        help="how long a fetched result stays stored (default: 24; unfetched: 30 days)",
    )
    serve.set_defaults(run=_serve)

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
    submit.set_defaults(run=client_errors(_submit))

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
    fetch.set_defaults(run=client_errors(_fetch))

    cancel = commands.add_parser("cancel", help="cancel a queued or running job")
    cancel.add_argument("job_id")
    add_remote_option(cancel)
    cancel.set_defaults(run=client_errors(_cancel))

    status = commands.add_parser("status", help="is the engine running; what it has loaded; its recent jobs")
    status.add_argument(
        "--all", action="store_true", help="list every stored job (default: active, unfetched and last day's)"
    )
    add_remote_option(status)
    status.set_defaults(run=client_errors(_status))
    stop = commands.add_parser("stop", help="stop the engine (interrupts a running job)")
    stop.set_defaults(run=client_errors(_stop))


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


def add_layer_option(parser) -> None:
    parser.add_argument(
        "--layer", help="label or id of the layer to refine (default: the first visible layer with strokes)"
    )


def add_remote_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--remote",
        metavar="FILE",
        default=os.environ.get(REMOTE_ENV) or None,
        help="use the engine of this remote connection file (from `keys export` on a shared GPU machine) "
        f"instead of this computer's (default: ${REMOTE_ENV} if set)",
    )


def _serve(args) -> int:
    listen = parse_address(args.listen, "--listen") if args.listen else None
    usable = (
        0 < args.max_message_mb <= MAX_MESSAGE_MB
        and 0 <= args.keep_hours < math.inf
        and (args.idle_timeout is None or 0 < args.idle_timeout < math.inf)
    )  # NaN fails every comparison, so it is refused too
    if not usable:
        raise InputError(
            f"--max-message-mb (at most {MAX_MESSAGE_MB}), --idle-timeout and --keep-hours must be positive numbers",
            f"e.g. --idle-timeout 1800 --max-message-mb {MAX_MESSAGE_BYTES // 2**20} --keep-hours 24",
        )
    if args.workers != "local" and (args.workers != "ray" and not args.workers.startswith("ray://")):
        raise InputError(f"--workers {args.workers!r} is not local, ray or ray://HEAD:PORT", "e.g. --workers ray")
    if not 1 <= args.ray_cpu_actors <= 64:
        raise InputError("--ray-cpu-actors must be between 1 and 64", "e.g. --ray-cpu-actors 2")
    # torch and the models only for a valid command line
    from engine.service import worker
    from engine.service.options import ServerOptions
    from engine.service.server import serve

    options = ServerOptions(
        idle_timeout_s=args.idle_timeout,
        max_message_bytes=int(args.max_message_mb * 2**20),
        keep_fetched_s=args.keep_hours * 3600,
        listen=listen,
    )
    if args.workers == "local":
        from engine.clip.models import RN101, VIT_B32
        from engine.runtime import Runtime

        runtime = Runtime.create(**engine_settings(args))
        warm_up = functools.partial(runtime.load, RN101, VIT_B32)
        serve(functools.partial(worker.run_checked_job, runtime), runtime.describe, options, warm_up=warm_up)
        return 0
    from engine.service.ray_workers import RayWorkers

    pool = RayWorkers(None if args.workers == "ray" else args.workers, engine_settings(args), args.ray_cpu_actors)
    serve(pool.run, pool.describe, dataclasses.replace(options, workers=pool.size), warm_up=pool.warm_up)
    return 0


def client_errors(command):
    """Run `command`, turning the client's errors into engine errors that main() prints."""

    def run(args) -> int:
        from bridge.client import ClientError

        try:
            return command(args)
        except ClientError as err:
            raise ClientFailure(err.message, err.hint) from None
        except TimeoutError as err:
            raise ClientFailure(str(err), "fetch the job later with `sketch-abstraction fetch`") from None

    return run


def connect_client(args=None, start: bool = False):
    """A client of this computer's engine (started if `start` and none runs), or of the remote
    engine of `args.remote`. A remote engine runs the models its administrator chose."""
    from bridge.client import EngineClient
    from bridge.launcher import engine_command

    remote = getattr(args, "remote", None)
    if remote:
        return EngineClient.connect(remote=remote)
    command = engine_command(sys.executable, **engine_settings(args)) if start else None
    client = EngineClient.connect(start=command)
    if start:
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


def _running_client(args=None):
    """A client of the running engine, or None when none runs (never starts one)."""
    from bridge.client import EngineUnavailable

    try:
        return connect_client(args)
    except EngineUnavailable as err:
        if err.code == "not_running":
            return None
        raise  # running but not answering, or without a connection file: that is not "not running"


def _outputs(args) -> list[Path]:
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


def _submit(args) -> int:
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
                codes.append(_failed(prefix, err))
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
                        _writer(sketch, out),
                        fetch_options(args.remote, sketch),
                    )
                )
            ]
    return codes[0] if codes else 0  # one exit code per cause, as `sketch` would exit


def job_request(args, image, sketch=None):
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
    from engine.cli.sketch_file import refine_job

    return refine_job(job_args, image, sketch)


def _sketch_to_refine(args):
    """The sketch `submit --refine` refines (engine.cli.refine.SketchFile), None without --refine."""
    if not args.refine:
        return None
    if args.scene or len(args.images) != 1:
        raise InputError(
            "--refine refines a sketch of one photo: give exactly one IMAGE, and no --scene",
            f"sketch-abstraction submit --refine {args.refine} PHOTO_IT_WAS_MADE_FROM",
        )
    from engine.cli.sketch_file import read_sketch
    from engine.io.image import load_image

    return read_sketch(args.refine, args.layer, load_image(args.images[0]).size)


def fetch_options(remote: str | None, sketch=None) -> str:
    """The options a later `fetch` of a job needs (quoted, each after a space): the engine that has
    it, and for a refine the sketch (engine.cli.refine.SketchFile) its result is written back into."""
    words = (["--remote", remote] if remote else []) + (sketch.options() if sketch else [])
    return "".join(f" {shlex.quote(word)}" for word in words)


def _writer(sketch, out: Path):
    """How follow_job writes a refine's result: `sketch` with its layer refined (None: the SVG as it is)."""
    if sketch is None:
        return None
    from engine.cli.sketch_file import write_refined

    return lambda svg: write_refined(sketch, svg, out)


def _failed(prefix: str, err) -> int:
    """Report a job the engine refused or failed; its exit code (the one `sketch` gives that cause)."""
    print(f"{prefix}error: {err.message}\n  fix: {err.hint}", file=sys.stderr)
    return exit_code_for(err.code)


def follow_job(
    client,
    job_id: str,
    out: Path,
    quiet: bool,
    prefix: str = "",
    previews: bool = False,
    write=None,
    fetch_with: str = "",
) -> int:
    """Wait for one job with a progress bar and write its SVG; 0, or the exit code of its failure.
    With `previews`, each live preview the engine sends replaces OUT.preview.png. `write(svg)`
    writes the result to `out` (default: the engine's SVG as it is; a refine writes the document back).
    `fetch_with`: the options a later `fetch` of the job needs (fetch_options), for the messages."""
    later = f"sketch-abstraction fetch {job_id}{fetch_with} -o {shlex.quote(str(out))}"
    from bridge.client import JobFailed

    bar = ProgressBar(quiet, prefix)

    def show(msg) -> None:
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
        return _failed(prefix, err)
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


def preview_path(out: Path) -> Path:
    """Where `submit --preview-every` keeps the live preview of the job writing `out`."""
    return out.with_name(out.stem + ".preview.png")


def _fetch(args) -> int:
    out = writable_file(args.output, "-o", {"sketch": args.refine} if args.refine else None)
    sketch = None
    if args.refine:
        from engine.cli.sketch_file import read_sketch

        sketch = read_sketch(args.refine, args.layer)
    with connect_client(args) as client:
        return follow_job(client, args.job_id, out, args.quiet, write=_writer(sketch, out))


def _cancel(args) -> int:
    with connect_client(args) as client:
        print(f"{args.job_id}: {client.cancel(args.job_id)}")
    return 0


def _status(args) -> int:
    client = _running_client(args)
    if client is None:
        print("engine: not running (it starts on the first `submit` or Inkscape job)")
        return 3
    with client:
        s, jobs = client.status(), client.jobs()
    print(
        f"engine: running, pid {s['pid']}, version {s['version']} (protocol {s['protocol']}), up {s['uptime_s']:.0f} s"
    )
    print(
        f"device: {s['device']}; models: {s['models']} (loaded: {', '.join(s['loaded']) or 'none'}); "
        f"renderer: {s.get('renderer', 'ours')}"
    )
    others = f"; other clients' jobs: {s['others']}" if s.get("others") else ""
    print(f"running: {s['running'] or 'nothing'}; queued: {max(0, len(s['queue']) - bool(s['running']))}{others}")
    shown = jobs if args.all else [job for job in jobs if _worth_showing(job)]
    for job in shown:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(job["created"]))
        print(f"  {job['job_id']}  {job['state']:<11} {job['kind']:<6} {when}  {printable(job['name'])}")
    if len(shown) < len(jobs):
        print(
            f"  ({len(jobs) - len(shown)} older job(s) fetched or failed; `sketch-abstraction status --all` lists them)"
        )
    return 0


def _worth_showing(job: dict) -> bool:
    """Queued, running, done but not fetched yet, or finished within the last day."""
    if job["state"] in ("queued", "running") or (job["state"] == "done" and not job.get("fetched")):
        return True
    return time.time() - (job.get("finished") or job["created"]) < RECENT_S


def printable(text: str) -> str:
    """`text` with control characters escaped: a file name must not drive the terminal (an ESC
    sequence can retitle the window, hide text or move the cursor)."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}" for c in text)


def _stop(args) -> int:
    from bridge import connection
    from bridge.client import VERSION_MISMATCH, ClientError

    try:
        client = _running_client()
    except ClientError as err:
        info = connection.read_connection()
        if err.code == VERSION_MISMATCH and info is not None:
            os.kill(info.pid, signal.SIGTERM)  # it cannot read our messages; SIGTERM is its orderly stop too
            print(f"engine: stopping (protocol {info.version}, stopped with a signal)")
            return 0
        pid = info.pid if info is not None else connection.lock_holder()
        if err.code not in ("not_answering", "no_connection_file") or not pid:
            raise
        print(f"engine: stopped (pid {pid} did not answer; ended with {_end(pid)})")
        return 0
    if client is None:
        print("engine: not running")
        return 0
    with client:
        interrupted = client.shutdown()
    print("engine: stopping" + (f"; interrupted {len(interrupted)} job(s)" if interrupted else ""))
    return 0


def _end(pid: int) -> str:
    """End an engine that does not answer: SIGTERM (after SIGCONT, so that a paused one can act on
    it), then SIGKILL if it has not exited within STOP_WAIT_S. Its results are on disk either way."""
    from bridge import connection

    if connection.terminate(pid, STOP_WAIT_S):
        return "SIGTERM"
    os.kill(pid, getattr(signal, "SIGKILL", signal.SIGTERM))
    return "SIGKILL"
