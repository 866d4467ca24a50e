""" "Insert it as it is now" on the engine side: a running job's strokes so far (snapshot_request).

The real engine process with tiny random models over loopback (local) and over CURVE with two
designers' keys (remote), as in tests/test_bridge_engine.py and tests/test_remote_engine.py.
"""

from __future__ import annotations

import sys

import pytest

from bridge.client import JobFailed
from bridge.params import ClipassoParams, SceneParams, SceneRequest, request_to_json
from engine.methods.clipasso import BestSoFar, level_strokes
from tests.harness.engine import (
    ALWAYS,
    JOB_S,
    designer,
    image_size,
    long_params,
    sketch_job,
    svg_layers,
    tiny_params,
    wait_for,
    wait_idle,
)
from tests.harness.paths import ANIMAL

pytestmark = [
    pytest.mark.slow,  # the real engine process
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX process handling"),
]


def running_levels() -> ClipassoParams:
    """Two levels x two seeds that run until cancelled, evaluated every iteration."""
    return tiny_params(strokes=(6, 3), seeds=(0, 1), iterations=ALWAYS, eval_every=1)


def wait_optimising(engine_client, job_id: str) -> None:
    """Until the job's strokes have been evaluated (its progress shows the optimisation)."""

    def optimising() -> bool:
        stages = {j["job_id"]: (j.get("progress") or {}).get("stage") for j in engine_client.jobs()}
        return stages.get(job_id) == "optimise"

    wait_for(optimising, JOB_S, f"job {job_id} to optimise")


def test_a_running_jobs_snapshot_is_the_sketch_of_every_level_and_the_job_runs_on(engine, client):
    job_id, _ = client.submit(*sketch_job(params=running_levels(), color="#aa0000"), name="now.png")
    wait_optimising(client, job_id)
    svg = client.snapshot(job_id)
    # the layers a finished job writes: one per level, named as usual, the first visible, on the photo's pixels
    assert svg_layers(svg, image_size(ANIMAL)) == [("6 strokes", 6, True), ("3 strokes", 3, False)]
    assert b"#aa0000" in svg
    assert svg_layers(client.snapshot(job_id)) == svg_layers(svg)  # ask as often as you like
    assert {j["job_id"]: j["state"] for j in client.jobs()}[job_id] == "running"
    assert client.cancel(job_id) == "cancelling"
    wait_idle(client)


def test_a_finished_queued_unknown_or_scene_job_has_no_snapshot_and_says_why(engine, client):
    done_id, _ = client.submit(*sketch_job(), name="done.png")
    client.wait(done_id, timeout_s=JOB_S)
    with pytest.raises(JobFailed) as finished:
        client.snapshot(done_id)
    assert finished.value.code == "not_running" and "done" in finished.value.message
    assert "Insert Finished Sketches" in finished.value.hint

    running_id, _ = client.submit(*sketch_job(params=long_params()), name="long.png")
    queued_id, _ = client.submit(*sketch_job(), name="queued.png")
    with pytest.raises(JobFailed) as queued:
        client.snapshot(queued_id)
    assert queued.value.code == "not_running" and "queued" in queued.value.message
    client.cancel(queued_id)
    client.cancel(running_id)
    wait_idle(client)

    with pytest.raises(JobFailed) as unknown:
        client.snapshot("f" * 32)
    assert unknown.value.code == "unknown_job"

    scene_id, _ = client.submit(*request_to_json(SceneRequest(ANIMAL, SceneParams(), mask="none")), name="s.png")
    with pytest.raises(JobFailed) as refused:
        client.snapshot(scene_id)
    assert refused.value.code == "bad_input" and "only an object sketch" in refused.value.message
    client.cancel(scene_id)
    wait_idle(client)


def test_another_designer_cannot_fetch_a_running_jobs_snapshot(remote):
    alice, bob = designer(remote, "alice"), designer(remote, "bob")
    job_id, _ = alice.submit(*sketch_job(params=running_levels()), name="alice.png")
    wait_optimising(alice, job_id)
    with pytest.raises(JobFailed) as refused:
        bob.snapshot(job_id)
    assert refused.value.code == "unknown_job"  # another's job is as unknown as a missing one
    assert [label for label, _, _ in svg_layers(alice.snapshot(job_id))] == ["6 strokes", "3 strokes"]
    alice.cancel(job_id)


def test_no_snapshot_before_every_level_has_an_eval():
    import torch

    params = ClipassoParams(strokes=(2, 1), seeds=(0,))
    best = BestSoFar(torch.zeros(2, 2, 4, 2), params.min_delta)
    assert level_strokes(params, best) is None
    best.update(0, torch.tensor([0]), torch.tensor([0.5]), torch.ones(2, 2, 4, 2))
    assert level_strokes(params, best) is None  # the second level has none yet
    best.update(0, torch.tensor([1]), torch.tensor([0.7]), torch.full((2, 2, 4, 2), 3.0))
    first, second = level_strokes(params, best)
    assert first.shape == (2, 4, 2) and bool((first == 1).all())
    assert second.shape == (1, 4, 2) and bool((second == 3).all())
