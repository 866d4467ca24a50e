"""What becomes of a job: the worker's reports (progress with its preview, a snapshot, the end), the
outcome stored first and then sent to the job's watchers, and a done job's result on request.

Functions of the engine server (engine.service.server), like engine.service.snapshots: they run in
its main thread, which owns the sockets and the job state.
"""

from __future__ import annotations

import gc
import json
import time
from typing import Any

import zmq

from bridge.protocol import Message, error_content
from engine.budget import release_to_system
from engine.service import snapshots, worker
from engine.service.log import log as _log
from engine.service.queue_policy import Job
from engine.service.store import JobRecord, StoreError


def on_event(server: Any, router: zmq.Socket, frames: list[bytes]) -> None:
    """A worker's report: progress, a snapshot, or a job's end."""
    event = json.loads(frames[0])
    job_id = event["job_id"]
    if event["type"] == "finished" and server.queue.ended(job_id):
        server._dispatch(router)
        server._announce(router)
    if job_id not in server.queue.jobs:
        return  # finished and told already
    if event["type"] == "progress":
        _on_progress(server, router, server.queue.jobs[job_id], event["content"], frames[1:])
    elif event["type"] == "snapshot":
        snapshots.on_event(server, router, server.queue.jobs[job_id], event, frames[1:])
    elif event["type"] == "finished":
        snapshots.drop(server, router, server.queue.jobs[job_id])
        record = server.records[job_id]
        record.seconds, record.notes = event.get("seconds"), event.get("notes", [])
        finish(
            server, router, job_id, event["state"], error=event.get("error"), svg=frames[1] if len(frames) > 1 else None
        )
        gc.collect()
        release_to_system()


def _on_progress(server: Any, router: zmq.Socket, job: Job, content: dict[str, Any], preview: list[bytes]) -> None:
    """Remember the job's progress and measured speed, and pass it on with its preview, if any."""
    rate = content.pop("sketch_iteration_s", None)
    if rate is not None:
        server.rates[job.record.kind] = rate
    job.progress = content
    server._notify(router, job.record.job_id, Message("progress", content, preview))


def finish(
    server: Any, router: zmq.Socket, job_id: str, state: str, error: dict | None = None, svg: bytes | None = None
) -> None:
    """Store the outcome first, then tell the watchers: a lost message never loses a result."""
    job = server.queue.remove(job_id)
    record = job.record
    record.state, record.finished, record.error = state, time.time(), error
    try:
        server.store.save(record, svg)
    except StoreError as err:  # nothing may say "done" without its file: the job fails, now
        _log(err.message)
        state, svg, error = "error", None, error_content(err.code, err.message, err.hint, job_id)
        record.state, record.error = state, error
        save_or_log(server, record)
    for peer in job.watchers:
        if state == "done":
            send_result(server, router, [peer], {}, record, svg)
        else:
            server._send(router, record.owner, [peer], Message("error", error or worker.cancelled(job_id)))


def send_result(
    server: Any, router: zmq.Socket, ids: list[bytes], parent: dict, record: JobRecord, svg: bytes | None = None
) -> bool:
    """Send a done job's result (its SVG from the store unless given); whether it was delivered."""
    if svg is None:
        try:
            svg = server.store.svg(record.job_id)
        except StoreError as err:  # its file is gone: the job no longer says "done"
            record.state, record.error = "error", error_content(err.code, err.message, err.hint, record.job_id)
            save_or_log(server, record)
            raise
    content = {
        "job_id": record.job_id,
        "name": record.name,
        "kind": record.kind,
        "notes": record.notes,
        "seconds": record.seconds,
    }
    delivered = server._send(router, record.owner, ids, Message("result", content, [svg], parent))
    if delivered:
        record.fetched = time.time()
        save_or_log(server, record)
    return delivered


def save_or_log(server: Any, record: JobRecord) -> None:
    """Store a record whose failure to save loses nothing the user needs (its state in memory
    is what clients are told; what is on disk matters only after a restart)."""
    try:
        server.store.save(record)
    except StoreError as err:
        _log(err.message)
