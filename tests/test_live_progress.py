"""What a waiting user sees of a running job, through the real engine process on loopback: live
preview pictures, an honest time left, a running job's progress in status and job lists, and the
engine's measured speed (what the extension turns into the presets' cost)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bridge.client import JobFailed
from tests.harness.engine import (
    JOB_S,
    READY_S,
    engine_env,
    long_params,
    sketch_job,
    tiny_params,
    wait_for,
    wait_idle,
    wait_running,
)
from tests.harness.inkscape import INKSCAPE_PYTHON, SYSTEM_EXTENSIONS
from tests.harness.paths import ANIMAL, FIELD, ROOT

pytestmark = [
    pytest.mark.slow,  # the real engine process
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX process handling"),
]


@pytest.fixture
def client(engine):
    c = engine.client()
    wait_idle(c)
    yield c
    c.close()


def previews_of(client, job_id: str) -> tuple[list[dict], list[bytes]]:
    progress, pictures = [], []

    def seen(msg) -> None:
        if msg.msg_type == "progress":
            progress.append(dict(msg.content))
            pictures.extend(msg.buffers)

    client.wait(job_id, on_message=seen, timeout_s=JOB_S)
    return progress, pictures


def test_progress_carries_a_live_preview_when_asked(client):
    """The best strokes so far over the faded photo, as a small PNG, at most every `preview_every`."""
    params = tiny_params(strokes=(8,), iterations=40, eval_every=1)
    job_id, _ = client.submit(*sketch_job(ANIMAL, params), name="horse.png", preview_every=0.5)
    progress, pictures = previews_of(client, job_id)
    assert pictures, "no preview came with the progress"
    assert len(pictures) <= 2 + len(progress) // 2  # throttled, not one per message
    with Image.open(ANIMAL) as photo:
        aspect = photo.width / photo.height
    picture = np.asarray(Image.open(io.BytesIO(pictures[-1])).convert("L"), dtype=np.float64)
    assert max(picture.shape) == 256 and abs(picture.shape[1] / picture.shape[0] - aspect) < 0.02
    # The photo is faded to at least 75 % white: anything darker is a stroke.
    assert (picture < 150).sum() > 50 and picture.mean() > 150

    plain, _ = client.submit(*sketch_job(ANIMAL, tiny_params(iterations=10, eval_every=1)), name="horse.png")
    assert previews_of(client, plain)[1] == [], "no previews unless asked for"


@pytest.mark.parametrize("every", [0.1, -1, "3", True])
def test_a_preview_interval_out_of_range_is_refused(client, every):
    with pytest.raises(JobFailed) as err:
        client.submit(*sketch_job(ANIMAL, tiny_params()), name="horse.png", preview_every=every)
    assert err.value.code == "bad_input" and "preview_every" in err.value.message


def test_time_left_is_an_upper_bound_and_absent_once_nothing_runs(client):
    """A huge min_delta makes every sketch converge at its third eval, far below the 500-iteration
    cap: the time left must then shrink to nothing, not report the cap's remaining minutes."""
    params = tiny_params(strokes=(6, 3), iterations=500, eval_every=1, min_delta=1e6)
    job_id, _ = client.submit(*sketch_job(ANIMAL, params), name="horse.png")
    progress, _ = previews_of(client, job_id)
    optimise = [p for p in progress if p["stage"] == "optimise"]
    assert optimise[-1]["iteration"] < 10, "the sketches converged early"
    assert optimise[-1]["detail"].endswith("0 still optimising")
    assert optimise[-1]["eta_s"] is None, "no time left is shown when nothing runs"
    running = [p for p in optimise if not p["detail"].endswith(" 0 still optimising")]
    assert all(p["eta_s"] > 0 for p in running)


def test_status_and_list_show_a_running_jobs_progress_and_the_measured_speed(client):
    job_id, _ = client.submit(*sketch_job(ANIMAL, long_params()), name="horse.png")
    wait_running(client, job_id)
    entry = wait_for(
        lambda: next((j for j in client.status()["queue"] if j.get("progress", {}).get("stage") == "optimise"), None),
        JOB_S,
        "the running job's optimisation progress in status",
    )
    assert entry["name"] == "horse.png" and entry["progress"]["total"] == long_params().iterations
    listed = {j["job_id"]: j for j in client.jobs()}[job_id]
    assert listed["progress"]["stage"] == "optimise" and listed["progress"]["iteration"] > 0
    wait_for(lambda: client.status()["rates"].get("sketch", 0) > 0, JOB_S, "a measured speed")
    client.cancel(job_id)
    wait_idle(client)
    assert "progress" not in {j["job_id"]: j for j in client.jobs()}[job_id], "only running jobs have progress"


def test_submit_keeps_a_preview_png_next_to_the_svg(tmp_path):
    env = engine_env(tmp_path / "cli")
    out = tmp_path / "horse.svg"
    command = [sys.executable, "-m", "engine", "submit", str(ANIMAL), "-o", str(out), "-q", "--preview-every", "0.5"]
    tiny = ["--models", "tiny-random", "--device", "cpu", "--strokes", "4", "--seeds", "1", "--aug-bank", "4"]
    try:
        done = subprocess.run(
            [*command, *tiny, "--iterations", "30"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=READY_S + JOB_S,
        )
        assert done.returncode == 0, done.stderr
        assert out.exists() and Image.open(tmp_path / "horse.preview.png").size[0] == 256
        # A scene job on the same engine: its preview is the row being optimised, over the photo.
        scene_out = tmp_path / "field.svg"
        scene = [sys.executable, "-m", "engine", "submit", str(FIELD), "-o", str(scene_out), "-q", "--scene"]
        tiny_scene = [*tiny[:4], "--strokes", "8", "--seeds", "1", "--aug-bank", "4", "--mask", "none"]  # one part
        done = subprocess.run(
            [*scene, "--preview-every", "0.5", *tiny_scene, "--iterations", "1", "--levels", "0", "--layers", "2"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=JOB_S,
        )
        assert done.returncode == 0, done.stderr
        with Image.open(tmp_path / "field.preview.png") as picture:
            assert scene_out.exists() and picture.size == (256, 192)  # the 320 x 240 photo's shape
            ink = np.asarray(picture.convert("L")) < 150
        assert ink.sum() > 50, "strokes over the faded photo"
        bad = subprocess.run(
            [*command[:-1], "0.1", *tiny], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert bad.returncode == 2 and "--preview-every must be at least 0.5" in bad.stderr
    finally:
        subprocess.run([sys.executable, "-m", "engine", "stop"], env=env, capture_output=True, timeout=60)


@pytest.mark.skipif(not Path(INKSCAPE_PYTHON).exists(), reason="Inkscape's Python is not installed")
def test_the_window_gives_a_scenes_time_left_as_an_estimate_and_a_sketchs_as_a_bound(setup):
    """Object sketches stop early as they converge, so their time left is "at most"; a scene runs
    every stage to its count, and its time left is "about" (the status line the window and Engine
    Status show, as the installed extension computes it under Inkscape's Python)."""
    installed = setup  # the session's installed extension (tests/harness)
    content = {"detail": "simplicity 3/8", "loss": 0.5, "eta_s": 600.0}
    code = f"import sketchabs; from sketchabs.progress import status_line; c = {content!r}; " + (
        "print(status_line(c, 'scene')); print(status_line(c, 'sketch'))"
    )
    env = {**installed["env"], "PYTHONPATH": f"{installed['ext']}:{SYSTEM_EXTENSIONS}"}
    done = subprocess.run(
        [INKSCAPE_PYTHON, "-c", code], cwd=installed["ext"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.splitlines() == [
        "simplicity 3/8 · loss 0.5 · about 10 min left",
        "simplicity 3/8 · loss 0.5 · at most 10 min left",
    ], done.stderr
