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


def fair_order(order: list[str], records: Mapping[str, JobRecord], served: Mapping[str, int]) -> list[str]:
    """The queued job ids `order` (in the order they came; `records`: their owners) in the order
    they will run: identities take turns (one client's batch of 500 does not hold up another's one
    photo), the one served longest ago (`served`: identity -> turn) or never first; each identity's
    own jobs run in the order they came."""
    queues: dict[str, list[str]] = {}
    for job_id in order:
        queues.setdefault(records[job_id].owner, []).append(job_id)
    ranked = sorted(queues, key=lambda owner: served.get(owner, -1))  # stable: ties in order of arrival
    rounds = itertools.zip_longest(*(queues[owner] for owner in ranked))
    return [job_id for turn in rounds for job_id in turn if job_id is not None]
