"""Computing jobs for the engine: the worker thread, the progress it reports, and the job itself.

A worker thread takes one job at a time from the server's work queue and runs it; it owns no
socket of the server's and reports back through an in-process PUSH socket (EVENTS_URL): progress
events while the job runs, one "finished" event at its end. `throttled` is the progress callback
both this thread and the Ray actors (engine.service.ray_workers) hand to a job: it stops the job
when its cancel flag is set and passes on at most one report per PROGRESS_INTERVAL_S (and every
last one and every preview). `run_checked_job` is the job an engine runs: refused before it
allocates anything when it will not fit in the free memory.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, Protocol

import zmq

from bridge import protocol
from bridge.errors import Cancelled, DeviceError, EngineError
from bridge.protocol import error_content
from engine.budget import OUT_OF_MEMORY_HINT, is_out_of_memory
from engine.progress import Progress, ProgressCallback
from engine.service.queue_policy import Job

EVENTS_URL = "inproc://engine-events"
PROGRESS_INTERVAL_S = 0.1  # at most ten progress messages a second per job


class JobOutput(Protocol):
    svg: bytes  # the result
    seconds: float  # computing time
    notes: list[str]  # what the user should know (a mask resized, ...)


RunJob = Callable[[str, Any, ProgressCallback, float | None], JobOutput]
"""(kind, request of bridge.params.REQUESTS, progress, preview_every) -> the result; raises EngineError
for what the user can fix, and bridge.errors.Cancelled when `progress` raises it. With
`preview_every` (seconds) progress carries a PNG of the sketch so far (Progress.preview) at most that
often."""
Describe = Callable[[], dict[str, Any]]
"""What the engine computes with, for status replies: {device, models, renderer, loaded}."""


def run_checked_job(
    runtime: Any, kind: str, request: Any, progress: ProgressCallback, preview_every: float | None = None
) -> JobOutput:
    """One engine job, refused before it allocates anything if it will not fit in the free memory."""
    from engine.budget import check_fits
    from engine.jobs import run_job

    check_fits(runtime, kind, request)
    return run_job(runtime, kind, request, progress, preview_every)


def throttled(report: Callable[[Progress], None], cancel: threading.Event) -> ProgressCallback:
    """A job's progress callback: raises Cancelled once `cancel` is set; passes a report on to
    `report` at most every PROGRESS_INTERVAL_S, and always the last one and one with a preview."""
    last = 0.0

    def progress(p: Progress) -> None:
        nonlocal last
        if cancel.is_set():
            raise Cancelled("the job was cancelled", "")
        now = time.monotonic()
        if now - last >= PROGRESS_INTERVAL_S or p.iteration >= p.total or p.preview is not None:
            last = now
            report(p)

    return progress


def progress_content(job_id: str, p: Progress) -> dict[str, Any]:
    """The content of a progress message (bridge.protocol) for job `job_id`; the preview travels apart."""
    loss = p.loss if p.loss is not None and abs(p.loss) < float("inf") else None
    return {
        "job_id": job_id,
        "stage": p.stage,
        "iteration": p.iteration,
        "total": p.total,
        "loss": loss,
        "eta_s": p.eta_s,
        "detail": p.detail,
        "sketch_iteration_s": p.sketch_iteration_s,
    }


def work(context: zmq.Context, jobs: queue.Queue[Job | None], run_job: RunJob) -> None:
    """The worker thread: run the jobs of `jobs` in turn until it hands over None."""
    events = context.socket(zmq.PUSH)
    events.connect(EVENTS_URL)
    try:
        while (job := jobs.get()) is not None:
            run(job, run_job, events)
    finally:
        events.close(linger=1000)


def run(job: Job, run_job: RunJob, events: zmq.Socket) -> None:
    """Run `job` with `run_job`, sending its progress and its end to `events`."""
    job_id = job.record.job_id

    def report(p: Progress) -> None:
        event = {"type": "progress", "job_id": job_id, "content": progress_content(job_id, p)}
        events.send_multipart([json.dumps(event).encode()] + ([p.preview] if p.preview is not None else []))

    finished: dict[str, Any] = {"type": "finished", "job_id": job_id}
    svg = None
    try:
        if job.cancel.is_set():  # cancelled as it was handed over
            raise Cancelled("the job was cancelled", "")
        progress = snapshots(throttled(report, job.cancel), job, events)
        output = run_job(job.record.kind, job.request, progress, job.preview_every)
        svg = output.svg
        finished.update(state="done", seconds=round(output.seconds, 3), notes=output.notes)
    except Cancelled:
        finished.update(state="cancelled", error=cancelled(job_id))
    except EngineError as err:
        finished.update(state="error", error=error_content(err.code, err.message, err.hint, job_id))
    except Exception as err:  # incl. out of memory: the job fails, the engine serves on
        finished.update(state="error", error=unexpected(err, job_id))
    finally:
        job.request = None  # the image bytes are no longer needed
    if job.snapshot.is_set():  # asked for as it ended: the waiters hear it ended (the result follows)
        send_snapshot(job, events, None, ended=True)
    events.send_multipart([json.dumps(finished).encode()] + ([svg] if svg is not None else []))


def snapshots(progress: ProgressCallback, job: Job, events: zmq.Socket) -> ProgressCallback:
    """`progress`, which also answers the job's snapshot requests ("Insert it as it is now"): at the
    next report after one, the SVG of its strokes so far goes to `events` (in this thread, while the
    method's tensors hold still)."""

    def report(p: Progress) -> None:
        if job.snapshot.is_set():
            send_snapshot(job, events, p.snapshot() if p.snapshot is not None else None)
        progress(p)

    return report


def send_snapshot(job: Job, events: zmq.Socket, svg: bytes | None, ended: bool = False) -> None:
    """A "snapshot" event: the SVG of the job's strokes so far, or none (not yet evaluated, or `ended`)."""
    job.snapshot.clear()
    event = {"type": "snapshot", "job_id": job.record.job_id, "ended": ended}
    events.send_multipart([json.dumps(event).encode()] + ([svg] if svg is not None else []))


def cancelled(job_id: str) -> dict[str, Any]:
    return error_content(Cancelled.code, "the job was cancelled", "submit the image again to redo it", job_id)


def unexpected(err: Exception, job_id: str) -> dict[str, Any]:
    """The error content of a job that failed unexpectedly: out of memory (with its hint), or a bug."""
    text = str(err)
    if is_out_of_memory(err):  # the estimate let it through, or other programs took the memory meanwhile
        return error_content(
            DeviceError.code,
            f"out of memory: {text.splitlines()[0] if text else type(err).__name__}",
            OUT_OF_MEMORY_HINT,
            job_id,
        )
    traceback.print_exc()
    return error_content(
        protocol.INTERNAL,
        f"internal error ({type(err).__name__}: {text})",
        "this is a bug; please report it with the engine's log",
        job_id,
    )
