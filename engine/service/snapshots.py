""" "Insert it as it is now": a running job's strokes so far, on request (bridge.protocol's snapshot_request).

The server thread only records who asks and raises the job's `snapshot` flag; the job's own thread
answers at its next progress report (engine.service.worker.snapshots) with a "snapshot" event, which
`on_event` sends to everyone who asked. Only object sketches have one: a scene's matrix is rebuilt
from its columns only at the end, so a scene job is refused with a clear error.
"""

from __future__ import annotations

from typing import Any

from bridge import protocol
from bridge.errors import EngineError, InputError
from bridge.protocol import Message, error_content
from engine.service.queue_policy import Job

SNAPSHOT_KINDS = frozenset({"sketch"})  # job kinds whose strokes so far form the finished job's SVG


class NotRunning(EngineError):
    code = protocol.NOT_RUNNING


def on_request(server: Any, router: Any, sender: str, ids: list[bytes], msg: Message) -> None:
    """Handle a snapshot_request: the reply comes with the job's next progress report."""
    job_id = server._known(sender, msg.content.get("job_id"))  # another identity's job is unknown
    record = server.records[job_id]
    if record.kind not in SNAPSHOT_KINDS:
        raise InputError(
            f"a {record.kind} job has no sketch until it ends: only an object sketch can be inserted as it is now",
            "wait for it to finish, or cancel it and run it with fewer iterations",
        )
    job = server.queue.jobs.get(job_id)
    if job is None or job_id not in server.queue.running:
        raise NotRunning(
            f"the job is {record.state}, not running: there is no sketch in progress to insert",
            "a finished job's sketch comes in with Insert Finished Sketches (`sketch-abstraction fetch`); "
            "a queued one has none yet",
        )
    job.snapshot_waiters.append((sender, ids, msg))
    job.snapshot.set()


def on_event(server: Any, router: Any, job: Job, event: dict[str, Any], frames: list[bytes]) -> None:
    """Answer everyone waiting for `job`'s snapshot with the SVG of `frames`, or with why there is none."""
    waiters, job.snapshot_waiters = job.snapshot_waiters, []
    job_id = job.record.job_id
    for sender, ids, msg in waiters:
        if frames:
            reply = Message("snapshot_reply", {"job_id": job_id}, frames[:1], parent=msg.header)
            server._send(router, sender, ids, reply)
        elif event.get("ended"):
            server._reply(router, sender, ids, msg, "error", _ended(job_id))
        else:
            content = error_content(
                protocol.NOT_RUNNING,
                "the job has no evaluated strokes to send yet (it is still loading or placing them; "
                "an engine with Ray workers cannot send them)",
                "ask again in a few seconds, once its progress shows a loss",
                job_id,
            )
            server._reply(router, sender, ids, msg, "error", content)


def drop(server: Any, router: Any, job: Job) -> None:
    """Tell whoever still waits for a snapshot of `job`, which has just ended, that there is none."""
    waiters, job.snapshot_waiters = job.snapshot_waiters, []
    for sender, ids, msg in waiters:
        server._reply(router, sender, ids, msg, "error", _ended(job.record.job_id))


def _ended(job_id: str) -> dict[str, Any]:
    return error_content(
        protocol.NOT_RUNNING,
        "the job ended while its sketch so far was asked for",
        "a finished sketch comes in with Insert Finished Sketches (`sketch-abstraction fetch`)",
        job_id,
    )
