"""The engine's admission of a submitted job (engine.service.queue_policy.check_room): each client identity
has its own share of the queue, and all of them together one memory bound. Plain data, no engine:
the end-to-end case (two designers on the CURVE engine) is in tests/test_remote_engine.py."""

from __future__ import annotations

import pytest

from bridge import protocol
from engine.service.options import ServerOptions
from engine.service.queue_policy import Job, JobQueue, QueueFull, check_room
from engine.service.store import LOCAL_OWNER, JobRecord

SMALL = ServerOptions(max_message_bytes=1000, max_queued_jobs=3)  # 3 jobs, 2000 B each; 8000 B in all


def waiting(owner: str, count: int, size: int = 10) -> list[Job]:
    return [
        Job(
            JobRecord(job_id=f"{owner}{i}", name="p.png", kind="sketch", state="queued", created=0.0, owner=owner),
            None,
            size,
        )
        for i in range(count)
    ]


def test_the_defaults_are_per_client_with_a_bound_on_all_clients():
    options = ServerOptions()
    assert options.max_queued_jobs == 100
    assert options.queued_bytes_limit == 2 * protocol.MAX_MESSAGE_BYTES == 512 * 2**20
    assert options.total_queued_bytes_limit == 4 * options.queued_bytes_limit == 2 * 2**30


def test_one_client_filling_its_share_leaves_room_for_the_others():
    queue = waiting("alice", 3)
    with pytest.raises(QueueFull) as full:
        check_room(queue, "alice", 10, SMALL)
    assert full.value.code == protocol.QUEUE_FULL
    assert "queue is full for you (3 jobs of yours" in full.value.message and "cancel some" in full.value.hint
    check_room(queue, "bob", 10, SMALL)  # bob's first photo goes in
    check_room(queue, LOCAL_OWNER, 10, SMALL)


def test_a_client_s_images_are_capped_by_its_share_of_memory():
    queue = waiting("alice", 1, size=1500)
    with pytest.raises(QueueFull, match="0 MiB of images waiting; each client may have at most 3 jobs"):
        check_room(queue, "alice", 501, SMALL)
    check_room(queue, "alice", 500, SMALL)  # exactly its share
    check_room(queue, "bob", 2000, SMALL)


def test_all_clients_together_cannot_pass_the_engine_s_bound():
    queue = [job for owner in ("a", "b", "c") for job in waiting(owner, 2, size=1000)] + waiting("d", 1, size=1500)
    check_room(queue, "e", 500, SMALL)  # 8000 B in all: fits exactly
    with pytest.raises(QueueFull) as full:
        check_room(queue, "e", 501, SMALL)  # e holds nothing yet, but the engine holds 7500 B
    assert "from all its clients; at most 0 MiB" in full.value.message
    assert "batch` waits by itself" in full.value.hint


def test_the_queue_takes_turns_between_identities_and_tells_each_job_its_place():
    """JobQueue (the server's queue, without ZeroMQ): alice's batch of three, then bob's one photo;
    bob's runs second, not fourth, and positions say so."""
    queue = JobQueue(workers=1)
    for job in [*waiting("alice", 3), *waiting("bob", 1)]:
        queue.add(job)
    assert [job.record.job_id for job in queue.start_next()] == ["alice0"]
    assert queue.start_next() == []  # one worker, busy
    assert queue.active_ids() == ["alice0", "bob0", "alice1", "alice2"]
    assert [queue.position(j) for j in ("alice0", "bob0", "alice1", "alice2", "gone")] == [0, 1, 2, 3, None]
    assert queue.ended("alice0") and not queue.ended("alice0")
    queue.remove("alice0")
    assert [job.record.job_id for job in queue.start_next()] == ["bob0"]
    queue.remove("alice1")  # cancelled while waiting
    assert queue.active_ids() == ["bob0", "alice2"] and [j.record.job_id for j in queue.waiting()] == ["alice2"]
