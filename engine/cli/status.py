"""`sketch-abstraction status`: whether the engine runs, what it has loaded, and its recent jobs."""

from __future__ import annotations

import argparse
import time
from typing import Any

from engine.cli.client import add_remote_option, client_errors, printable, running_client

RECENT_S = 86_400.0  # `status` lists finished jobs this recent (all with --all)


def register(commands) -> None:
    status = commands.add_parser("status", help="is the engine running; what it has loaded; its recent jobs")
    status.add_argument(
        "--all", action="store_true", help="list every stored job (default: active, unfetched and last day's)"
    )
    add_remote_option(status)
    status.set_defaults(run=client_errors(run))


def run(args: argparse.Namespace) -> int:
    client = running_client(args)
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


def _worth_showing(job: dict[str, Any]) -> bool:
    """Queued, running, done but not fetched yet, or finished within the last day."""
    if job["state"] in ("queued", "running") or (job["state"] == "done" and not job.get("fetched")):
        return True
    return time.time() - (job.get("finished") or job["created"]) < RECENT_S
