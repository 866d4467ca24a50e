"""`serve --workers ray`: the real engine process with a local Ray and two CPU actors (tiny random
models). Jobs spread over both actors and give the results a local run gives; an actor killed
mid-job does not lose the job. Skipped where Ray (the cluster extra) is not installed."""

from __future__ import annotations

import os
import re
import signal
import sys
import warnings

import pytest
import torch

from bridge.params import SketchRequest
from tests.conftest import ANIMAL
from tests.test_bridge_engine import JOB_S, Engine, sketch_job, svg_layers, tiny_params, wait_for

pytest.importorskip("ray")
pytestmark = [pytest.mark.skipif(sys.platform == "win32", reason="POSIX process handling"), pytest.mark.slow]

NUMBER = re.compile(rb"-?\d+\.\d+")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    eng = Engine(tmp_path_factory.mktemp("ray"))
    try:
        eng.start("--workers", "ray", "--ray-cpu-actors", "2")
    except BaseException:
        eng.proc.terminate()  # not SIGKILL: the engine ends the Ray it started
        eng.proc.wait(timeout=60)
        raise
    yield eng
    eng.stop()


def coordinates(svg: bytes) -> list[float]:
    return [float(v) for v in NUMBER.findall(svg[svg.index(b"<path") :])]


def test_jobs_spread_over_both_actors_with_the_results_of_a_local_run(cluster):
    from engine.jobs import run_job
    from engine.runtime import Runtime

    client = cluster.client(timeout_s=60)
    assert client.status()["device"] == "ray: 2 CPU worker(s)"
    params = [tiny_params(seeds=(seed,)) for seed in range(10)]
    ids = [client.submit(*sketch_job(ANIMAL, p), name=f"seed{i}.png")[0] for i, p in enumerate(params)]
    results = [client.wait(job_id, timeout_s=3 * JOB_S) for job_id in ids]
    used = set(re.findall(r"job on ray worker (\d)", cluster.log_text()))
    assert used == {"0", "1"}, cluster.log_text()[-2000:]
    # The CPU, as the actors here (not the session's `runtime`: it is parametrised over devices, which
    # would also make pytest split this module and start its Ray twice). One thread, as Ray gives a
    # 1-CPU actor: the same arithmetic, and on a busy 2-core machine a tenth of the time of two
    # threads that wait for each other.
    runtime = Runtime.create("cpu", "tiny-random")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for seed in (0, 7):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "tiny-random weights, ... meaningless"
                local = run_job(runtime, "sketch", SketchRequest(ANIMAL.read_bytes(), params[seed]))
            assert coordinates(results[seed].svg) == pytest.approx(coordinates(local.svg), abs=1e-3)
    finally:
        torch.set_num_threads(threads)


def test_an_actor_killed_mid_job_hands_the_job_to_the_other(cluster):
    client = cluster.client(timeout_s=60)
    before = cluster.log_text()
    job_id, _ = client.submit(*sketch_job(ANIMAL, tiny_params(iterations=60, eval_every=60)), name="long.png")

    def optimising() -> dict | None:  # the job's progress once its actor optimises the strokes
        progress = next((j.get("progress") or {} for j in client.status()["queue"] if j["job_id"] == job_id), {})
        return progress if progress.get("stage") == "optimise" else None

    progress = wait_for(optimising, JOB_S, "the job to optimise", 0.02)
    line = re.search(r"job on ray worker (\d) \(pid (\d+)\)", cluster.log_text()[len(before) :])
    os.kill(int(line.group(2)), signal.SIGKILL)
    assert progress["iteration"] < progress["total"] and client.fetch(job_id)["state"] == "running"  # mid-job
    result = client.wait(job_id, timeout_s=3 * JOB_S)
    assert svg_layers(result.svg)[0][1] == 4
    log = cluster.log_text()[len(before) :]
    assert f"ray worker {line.group(1)} died during a job" in log
    assert len(re.findall(r"job on ray worker", log)) == 2  # ran once more, on a worker that lived
    done = [j for j in client.jobs() if j["job_id"] == job_id]
    assert done[0]["state"] == "done"


def test_a_ray_engine_says_it_cannot_send_a_running_jobs_sketch_and_runs_on(cluster):
    """Insert it as it is now: the strokes stay in the actor's process, so the engine says why there
    is nothing to insert (docs/inkscape.md says so) instead of leaving the designer waiting."""
    from bridge.client import JobFailed
    from tests.test_bridge_engine import long_params, wait_idle
    from tests.test_snapshot import wait_optimising

    client = cluster.client(timeout_s=60)
    job_id, _ = client.submit(*sketch_job(ANIMAL, long_params()), name="long.png")
    wait_optimising(client, job_id)
    with pytest.raises(JobFailed) as refused:
        client.snapshot(job_id)
    assert refused.value.code == "not_running" and "Ray workers cannot send them" in refused.value.message
    assert client.cancel(job_id) == "cancelling"
    wait_idle(client)
