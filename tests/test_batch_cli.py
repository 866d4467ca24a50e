"""`sketch-abstraction batch` against the real engine process (tiny random models, loopback):
folders and globs in, one SVG per photo out, failures named in the summary, and a run killed
halfway resumed without redoing a photo."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness.engine import JOB_S, Engine, engine_env, svg_layers, wait_for
from tests.harness.paths import ANIMAL, ROOT, VASE

pytestmark = [
    pytest.mark.slow,  # the CLI and the engine as processes
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX process handling"),
]

BROKEN = "broken\x1b]0;pwned\x07.png"  # not an image, and a name with a terminal escape sequence in it
FAST = ("--models", "tiny-random", "--strokes", "4", "--iterations", "5", "--seeds", "1", "--aug-bank", "4")


def batch(env, *args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "engine", "batch", *args, *FAST],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "shoot"
    folder.mkdir()
    for i in range(6):
        shutil.copy(ANIMAL if i % 2 else VASE, folder / f"photo{i}.png")
    (folder / BROKEN).write_bytes(b"not an image at all")
    (folder / "notes.txt").write_text("not a photo: ignored by the folder input")
    return folder


def test_batch_resumes_after_being_killed_halfway(tmp_path, photos):
    env = engine_env(tmp_path / "engine")
    engine = Engine(tmp_path / "engine", env).start()
    out = tmp_path / "svgs"
    try:
        first = batch(env, str(photos), "--out-dir", str(out), "--in-flight", "3")
        wait_for(lambda: len(list(out.glob("*.svg"))) >= 2 or first.poll() is not None, JOB_S, "two SVGs")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        done_before = {p.name for p in out.glob("*.svg")}
        assert 2 <= len(done_before) < 6, "killed too late to test resuming"
        assert json.loads((out / ".sketch-abstraction-batch.json").read_text()), "no jobs were remembered"

        second = batch(env, str(photos / "*.png"), "--out-dir", str(out), "--in-flight", "3")
        stdout, stderr = second.communicate(timeout=5 * JOB_S)
        assert second.returncode == 2, stderr  # the broken photo: bad input
        assert f"7 photo(s): {6 - len(done_before)} written, {len(done_before)} already done (skipped), 1 failed" in (
            stdout
        ), stdout
        # the name as it is, but escaped: its ESC sequence would retitle the terminal (issue 22)
        assert "broken\\x1b]0;pwned\\x07.png" in stdout and "not an image" in stdout, stdout
        assert "\x1b" not in stdout + stderr and "\x07" not in stdout + stderr
        for i in range(6):
            assert svg_layers((out / f"photo{i}.svg").read_bytes())[0][1] == 4
        assert not (out / ".sketch-abstraction-batch.json").exists()
        # Every photo ran once: the jobs the killed run had submitted were followed, not submitted again.
        records = [json.loads(p.read_text()) for p in (engine.data_dir / "results").glob("*.json")]
        names = sorted(r["name"] for r in records if r["state"] == "done")
        assert names == [f"photo{i}.png" for i in range(6)], names
    finally:
        engine.stop()


def test_batch_refuses_inputs_that_name_no_photo_and_clashing_names(tmp_path, photos):
    env = engine_env(tmp_path)
    twin = tmp_path / "other"
    twin.mkdir()
    shutil.copy(ANIMAL, twin / "photo1.png")
    for args, words in (
        ((str(tmp_path / "missing"),), "names no photo"),
        ((str(photos / "*.jpg"),), "names no photo"),
        ((str(photos), str(twin)), "would both write"),
        ((str(photos), "--in-flight", "0"), "--in-flight must be"),
    ):
        done = batch(env, *args, "--out-dir", str(tmp_path / "out"))
        _, stderr = done.communicate(timeout=60)
        assert done.returncode == 2 and words in stderr, (args, stderr)
    assert not (tmp_path / "out").exists() and not list((tmp_path / "run").iterdir()), "nothing starts on bad input"


def test_a_run_killed_between_submitting_and_saving_the_job_id_does_not_redo_the_photo(tmp_path, photos):
    """The engine took photo0's job, but the batch died before noting its id (only its mark): the
    next run finds that job on the engine and follows it. The engine's queue holds two of these
    photos per client (10 KiB messages): the batch, 8 in flight, meets a full queue, waits and
    submits the refused photos again."""
    from bridge.client import EngineClient
    from bridge.params import ClipassoParams, SketchRequest, request_to_json

    env = engine_env(tmp_path / "engine")
    engine = Engine(tmp_path / "engine", env).start("--max-message-mb", "0.01")
    out = tmp_path / "svgs"
    out.mkdir()
    try:
        (photos / BROKEN).unlink()
        marked = time.time()
        with EngineClient(engine.info, timeout_s=20) as client:
            params = ClipassoParams(strokes=(4,), seeds=(0,), iterations=5, aug_bank=4)
            client.submit(*request_to_json(SketchRequest(photos / "photo0.png", params)), name="photo0.png")
        state = {str((photos / "photo0.png").resolve()): f"submitting at {marked - 1:.3f}"}
        (out / ".sketch-abstraction-batch.json").write_text(json.dumps(state))
        run = batch(env, str(photos), "--out-dir", str(out))
        stdout, stderr = run.communicate(timeout=5 * JOB_S)
        assert run.returncode == 0, stderr
        assert "6 photo(s): 6 written" in stdout
        assert "queue is full: waiting for room" in stderr  # (the test's premise)
        records = [json.loads(p.read_text()) for p in (engine.data_dir / "results").glob("*.json")]
        assert sorted(r["name"] for r in records) == [f"photo{i}.png" for i in range(6)]
    finally:
        engine.stop()


# -- issue 22: FIFOs, a damaged state, two runs on one folder ---------------------------------------


def test_a_fifo_at_an_output_or_at_the_state_file_is_refused_not_waited_on(tmp_path, photos):
    """Before: the resume check and the state read opened a FIFO and waited for a writer forever."""
    env = engine_env(tmp_path)
    for fifo_name in ("photo1.svg", ".sketch-abstraction-batch.json"):
        out = tmp_path / f"out-{fifo_name.strip('.')}"
        out.mkdir()
        os.mkfifo(out / fifo_name)
        done = batch(env, str(photos), "--out-dir", str(out))
        _, stderr = done.communicate(timeout=60)
        assert done.returncode == 2 and "not a regular file" in stderr and fifo_name in stderr, stderr
    assert not list((tmp_path / "run").iterdir()), "refused before any engine starts"


def test_a_second_run_on_the_same_folder_is_refused_and_a_file_is_no_out_dir(tmp_path, photos):
    env = engine_env(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".sketch-abstraction-batch.lock", "w") as held:  # a first run holds the folder
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        done = batch(env, str(photos), "--out-dir", str(out))
        _, stderr = done.communicate(timeout=60)
    assert done.returncode == 2 and "another batch run is writing to" in stderr, stderr
    (tmp_path / "a-file").write_text("not a folder")
    done = batch(env, str(photos), "--out-dir", str(tmp_path / "a-file"))
    _, stderr = done.communicate(timeout=60)
    assert done.returncode == 2 and "is not a folder" in stderr, stderr  # was exit 5, an output error


def test_a_state_file_with_a_damaged_mark_is_resumed_not_crashed_on(tmp_path):
    """`"submitting at yesterday"` in the state made every rerun crash; the mark is dropped instead."""
    env = engine_env(tmp_path / "engine")
    folder = tmp_path / "shoot"
    folder.mkdir()
    shutil.copy(VASE, folder / "vase.png")
    out = tmp_path / "out"
    out.mkdir()
    damaged = {str(folder / "vase.png"): "submitting at yesterday"}
    (out / ".sketch-abstraction-batch.json").write_text(json.dumps(damaged))
    engine = Engine(tmp_path / "engine", env).start()
    try:
        done = batch(env, str(folder), "--out-dir", str(out))
        _, stderr = done.communicate(timeout=JOB_S)
        assert done.returncode == 0, stderr
        assert "Traceback" not in stderr and svg_layers((out / "vase.svg").read_bytes())
    finally:
        engine.stop()
