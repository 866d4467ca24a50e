"""`sketch-abstraction stop`: stop this computer's engine (it interrupts a running job); one that does
not answer is ended with a signal."""

from __future__ import annotations

import argparse
import os
import signal

from engine.cli.client import client_errors, running_client

STOP_WAIT_S = 10.0  # an engine not answering `stop` gets this long to exit on SIGTERM


def register(commands) -> None:
    stop = commands.add_parser("stop", help="stop the engine (interrupts a running job)")
    stop.set_defaults(run=client_errors(run))


def run(args: argparse.Namespace) -> int:
    from bridge import connection
    from bridge.client import VERSION_MISMATCH, ClientError

    try:
        client = running_client()
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
