"""The engine's queue: what a waiting job holds, whether one more fits, and the order jobs run in.

Plain data and pure functions (no ZeroMQ): the limits are per client identity, so that one
designer's batch of 500 cannot shut the others out, plus one bound on all identities together, so
that many clients cannot take the engine's memory (queued images wait in RAM, undecoded).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bridge import protocol
from bridge.errors import EngineError
from engine.service.options import ServerOptions
from engine.service.store import JobRecord


@dataclass
class Job:
    record: JobRecord
    request: Any  # a request of bridge.params.REQUESTS; None once it ran or was cancelled
    size: int = 0  # bytes of its image and mask, held while it waits
    watchers: set[bytes] = field(default_factory=set)  # routing ids that get progress and the result
    cancel: threading.Event = field(default_factory=threading.Event)
    preview_every: float | None = None  # seconds between live previews; None: none
    progress: dict[str, Any] | None = None  # the last progress content, for status and list replies
    announced: int | None = None  # the queue position its watchers were last told
    snapshot: threading.Event = field(default_factory=threading.Event)  # asks the running job for its strokes so far
    snapshot_waiters: list[Any] = field(default_factory=list)  # (sender, ids, request) waiting for them


class QueueFull(EngineError):
    code = protocol.QUEUE_FULL


def check_room(waiting: list[Job], owner: str, size: int, options: ServerOptions) -> None:
    """QueueFull when one more job of `owner` with `size` bytes of images would pass its share of the
    queue (ServerOptions.max_queued_jobs and queued_bytes_limit) or the bound on all waiting jobs."""
    own = [job for job in waiting if job.record.owner == owner]
    held = sum(job.size for job in own)
    if len(own) >= options.max_queued_jobs or held + size > options.queued_bytes_limit:
        raise QueueFull(
            f"the engine's queue is full for you ({len(own)} jobs of yours, {held / 2**20:.0f} MiB of images "
            f"waiting; each client may have at most {options.max_queued_jobs} jobs and "
            f"{options.queued_bytes_limit / 2**20:.0f} MiB waiting)",
            "submit the rest when some have finished (`sketch-abstraction status`), or cancel some; "
            "`sketch-abstraction batch` waits by itself",
        )
    total = sum(job.size for job in waiting)
    if total + size > options.total_queued_bytes_limit:
        raise QueueFull(
            f"the engine's queue is full ({total / 2**20:.0f} MiB of images waiting from all its clients; at most "
            f"{options.total_queued_bytes_limit / 2**20:.0f} MiB)",
            "submit again when some have finished (`sketch-abstraction status`); `sketch-abstraction batch` waits "
            "by itself",
        )


def fair_order(order: list[str], jobs: Mapping[str, Job], served: Mapping[str, int]) -> list[str]:
    """The queued job ids `order` (in the order they came) in the order they will run: identities
    take turns (one client's batch of 500 does not hold up another's one photo), the one served
    longest ago (`served`: identity -> turn) or never first; each identity's own jobs run in the
    order they came."""
    queues: dict[str, list[str]] = {}
    for job_id in order:
        queues.setdefault(jobs[job_id].record.owner, []).append(job_id)
    ranked = sorted(queues, key=lambda owner: served.get(owner, -1))  # stable: ties in order of arrival
    rounds = itertools.zip_longest(*(queues[owner] for owner in ranked))
    return [job_id for turn in rounds for job_id in turn if job_id is not None]


class JobQueue:
    """The engine's queued and running jobs and whose turn is next; the server does the talking."""

    def __init__(self, workers: int):
        self.workers = workers  # jobs that run at once
        self.jobs: dict[str, Job] = {}  # queued and running
        self.order: list[str] = []  # queued ids, in the order they came (fair_order: the order they run)
        self.running: list[str] = []  # ids handed to a worker, in that order
        self.served: dict[str, int] = {}  # owner -> the turn at which a job of theirs last started
        self._turns = itertools.count()

    def waiting(self) -> list[Job]:
        return [self.jobs[job_id] for job_id in self.order]

    def add(self, job: Job) -> None:
        self.jobs[job.record.job_id] = job
        self.order.append(job.record.job_id)

    def remove(self, job_id: str) -> Job:
        """Take a job out (finished, cancelled or interrupted)."""
        if job_id in self.order:
            self.order.remove(job_id)
        return self.jobs.pop(job_id)

    def ended(self, job_id: str) -> bool:
        """A worker is done with `job_id`; whether it was running (its place is free now)."""
        if job_id not in self.running:
            return False
        self.running.remove(job_id)
        return True

    def start_next(self) -> list[Job]:
        """The queued jobs that start now, one per idle worker, in fair order; running from now on."""
        started = []
        while len(self.running) < self.workers and self.order:
            job_id = fair_order(self.order, self.jobs, self.served)[0]
            self.order.remove(job_id)
            self.running.append(job_id)
            self.served[self.jobs[job_id].record.owner] = next(self._turns)
            started.append(self.jobs[job_id])
        return started

    def active_ids(self) -> list[str]:
        """Running jobs, then the queued ones in the order they will run."""
        return self.running + fair_order(self.order, self.jobs, self.served)

    def position(self, job_id: str) -> int | None:
        """0 for a running job, 1 for the next, ...; None for finished jobs."""
        if job_id in self.running:
            return 0
        waiting = fair_order(self.order, self.jobs, self.served)
        return waiting.index(job_id) + 1 if job_id in waiting else None
