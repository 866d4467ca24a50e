"""`sketch-abstraction cancel`: cancel a queued or running job on the engine."""

from __future__ import annotations

import argparse

from engine.cli.client import add_remote_option, client_errors, connect_client


def register(commands) -> None:
    cancel = commands.add_parser("cancel", help="cancel a queued or running job")
    cancel.add_argument("job_id")
    add_remote_option(cancel)
    cancel.set_defaults(run=client_errors(run))


def run(args: argparse.Namespace) -> int:
    with connect_client(args) as client:
        print(f"{args.job_id}: {client.cancel(args.job_id)}")
    return 0
