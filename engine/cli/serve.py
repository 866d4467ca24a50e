"""`sketch-abstraction serve`: run the persistent engine that `submit`, `batch` and the Inkscape
extension send their jobs to; it keeps the models loaded between jobs."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math

from bridge.errors import InputError
from bridge.protocol import MAX_MESSAGE_BYTES
from engine.cli.options import add_engine_options, engine_settings, parse_address

MAX_MESSAGE_MB = 4096  # queued images: up to twice this per client, 8 times in all (ServerOptions)


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
    serve.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
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
