"""The engine's command line: `sketch-abstraction submit | fetch | cancel | status | stop | serve`.

Each command runs as its own process (`python -m engine ...`), as a user would run it; `submit`
starts the real engine (tiny random models, CPU) detached on first use, and the module stops it.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bridge import connection
from bridge.client import EngineClient, EngineUnavailable
from bridge.launcher import engine_command
from bridge.protocol import VERSION
from engine.cli import build_parser
from tests.harness.engine import (
    JOB_S,
    READY_S,
    Engine,
    engine_env,
    image_size,
    long_params,
    pid_gone,
    sketch_job,
    svg_layers,
    wait_for,
    with_private_mounts,
)
from tests.harness.paths import ANIMAL, FIELD, ROOT, VASE

pytestmark = [
    pytest.mark.slow,  # the CLI and the engine as processes
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX process handling"),
]

ENGINE = ["--models", "tiny-random", "--device", "cpu"]
TINY = [*ENGINE, "--strokes", "4", "--seeds", "1", "--iterations", "5", "--aug-bank", "4"]
ID = re.compile(r"[0-9a-f]{32}")


def cli(
    env: dict,
    *args: str,
    cwd: Path = ROOT,
    timeout: float = READY_S + JOB_S,
    memory_limit: int | None = None,
    prefix: tuple[str, ...] = (),
) -> subprocess.CompletedProcess:
    """`sketch-abstraction ARGS` as a process; `memory_limit` (bytes) caps its address space;
    `prefix` is a command that runs it (e.g. in a namespace)."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))

    return subprocess.run(
        [*prefix, sys.executable, "-m", "engine", *map(str, args)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=cap if memory_limit else None,
    )


def engine_pid(env: dict) -> int | None:
    try:
        pid = json.loads((Path(env["SKETCH_ABSTRACTION_RUNTIME_DIR"]) / connection.CONNECTION_FILE).read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return None
    return pid if connection.pid_alive(pid) else None


def api_client(env: dict) -> EngineClient:
    info = json.loads((Path(env["SKETCH_ABSTRACTION_RUNTIME_DIR"]) / connection.CONNECTION_FILE).read_text())
    return EngineClient(connection.ConnectionInfo(**info), timeout_s=20)


def stop_engine(env: dict) -> None:
    pid = engine_pid(env)
    if pid is None:
        return
    cli(env, "stop", timeout=60)
    try:
        wait_for(lambda: pid_gone(pid), 60, "the engine to stop")
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        raise


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Folders and HOME of this module's user; the engine `submit` starts there is stopped at the end."""
    environment = engine_env(tmp_path_factory.mktemp("cli"))
    yield environment
    stop_engine(environment)


@pytest.fixture
def running(env, tmp_path):
    """The engine runs (started by a `submit`, as a user starts it); returns its pid."""
    if engine_pid(env) is None:
        out = cli(env, "submit", ANIMAL, *TINY, "-q", "-o", tmp_path / "warmup.svg")
        assert out.returncode == 0, out.stderr
    return engine_pid(env)


def error_lines(stderr: str) -> list[str]:
    """The "error: ..." line and its "  fix: ..." line (progress bars and notes aside)."""
    lines = stderr.splitlines()
    i = next(i for i, line in enumerate(lines) if "error: " in line)
    return lines[i : i + 2]


# -- without an engine -----------------------------------------------------------------------------


def test_status_and_stop_say_when_no_engine_runs(tmp_path):
    alone = engine_env(tmp_path)
    status = cli(alone, "status")
    assert status.returncode == 3
    assert status.stdout.startswith("engine: not running")
    stop = cli(alone, "stop")
    assert stop.returncode == 0 and stop.stdout.strip() == "engine: not running"


def empty_run_user() -> tuple[str, ...]:
    """A command prefix that runs a command with an empty /run/user (a fresh mount namespace), so
    that a test of the runtime-folder fallback neither sees nor touches this machine's."""
    return with_private_mounts("mount -t tmpfs tmpfs /run/user")


@pytest.mark.parametrize("squat", ["symlink", "another user's folder"])
def test_without_xdg_runtime_dir_a_squatted_temp_folder_changes_nothing(tmp_path, squat):
    """XDG_RUNTIME_DIR unset (ssh, cron) and another user created /tmp/runtime-<uid> first: every
    command works, quietly, with a private folder in the user's cache."""
    env = engine_env(tmp_path)
    del env["XDG_RUNTIME_DIR"], env["SKETCH_ABSTRACTION_RUNTIME_DIR"]
    env["TMPDIR"] = str(tmp_path / "tmp")
    taken = tmp_path / "tmp" / f"runtime-{os.getuid()}"
    taken.parent.mkdir()
    if squat == "symlink":
        (tmp_path / "theirs").mkdir()
        taken.symlink_to(tmp_path / "theirs")
    else:
        if os.getuid() != 0:
            pytest.skip("making a folder of another user needs root")
        taken.mkdir()
        os.chown(taken, 65534, 65534)
    isolated = empty_run_user()
    run = Path(env["XDG_CACHE_HOME"]) / "sketch-abstraction" / "run"
    try:
        status = cli(env, "status", prefix=isolated)
        assert status.returncode == 3 and status.stdout.startswith("engine: not running"), status.stderr
        out = cli(env, "submit", ANIMAL, *TINY, "-q", "-o", tmp_path / "a.svg", prefix=isolated)
        assert out.returncode == 0, out.stderr
        status = cli(env, "status", prefix=isolated)
        assert status.returncode == 0 and status.stdout.startswith("engine: running"), status.stderr
        for done in (status, out):
            assert "Traceback" not in done.stderr and "Warning" not in done.stderr, done.stderr
        assert (run / connection.CONNECTION_FILE).exists()
        assert run.stat().st_mode & 0o777 == 0o700 and (run / connection.LOG_FILE).stat().st_mode & 0o777 == 0o600
        assert list((tmp_path / "theirs").iterdir() if squat == "symlink" else taken.iterdir()) == []
    finally:
        stop = cli(env, "stop", prefix=isolated)
        assert stop.returncode == 0 and stop.stdout.startswith("engine: "), stop.stderr


@pytest.mark.parametrize("owner", ["dead pid", "pid reused by another process"])
def test_status_treats_a_stale_connection_file_as_not_running(tmp_path, owner):
    alone = engine_env(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with socket.socket() as closed:  # a port nobody listens on any more
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    path = Path(alone["SKETCH_ABSTRACTION_RUNTIME_DIR"]) / connection.CONNECTION_FILE
    path.write_text(
        json.dumps(
            {
                "port": port,
                "key": "0" * 64,
                "version": VERSION,
                "ip": "127.0.0.1",
                "transport": "tcp",
                "pid": dead.pid if owner == "dead pid" else os.getpid(),
            }
        )
    )
    started = time.monotonic()
    status = cli(alone, "status", timeout=30)
    assert status.returncode == 3 and status.stdout.startswith("engine: not running")
    assert time.monotonic() - started < 5, "told at once, not after a request timed out"


@pytest.mark.parametrize(
    "args, message, fix",
    [
        (
            ["submit", ANIMAL, VASE, "-o", "x.svg"],
            "-o names one SVG but several images were given",
            "use --out-dir DIR instead",
        ),
        (
            ["submit", ANIMAL, "--out-dir", "no/such/folder"],
            "--out-dir no/such/folder is not a folder",
            "create it first",
        ),
        (
            ["submit", ANIMAL, ANIMAL, "--out-dir", "."],
            "two images would write the same SVG (same file name)",
            "rename one, or submit them apart",
        ),
        (["submit", "missing.png"], "image file not found: missing.png", "check the path"),
        (["submit", "/dev/zero"], "image file /dev/zero is not a regular file", "save the data to a file"),
        (["submit", ANIMAL, "-o", ANIMAL], "is the input image", "another file name"),
        (["submit", ANIMAL, "--mask", VASE, "-o", VASE], "is the input mask", "another file name"),
        (["submit", ANIMAL, "--strokes", "0"], "stroke counts must be between 1 and 1024", "--help"),
        (["submit", ANIMAL, "--color", "red"], "colour (--color) must be a hex colour", "--color"),
        (["serve", "--idle-timeout", "0"], "must be positive", "--idle-timeout 1800"),
        (["serve", "--max-message-mb", "inf"], "must be positive numbers", "--max-message-mb 256"),
        (["serve", "--max-message-mb", "nan"], "must be positive numbers", "--max-message-mb 256"),
        (["serve", "--keep-hours", "nan"], "must be positive numbers", "--keep-hours 24"),
    ],
    ids=[
        "o-with-two-images",
        "out-dir-missing",
        "same-names",
        "missing-image",
        "dev-zero",
        "o-is-the-image",
        "o-is-the-mask",
        "no-strokes",
        "bad-colour",
        "bad-idle-timeout",
        "infinite-message-limit",
        "nan-message-limit",
        "nan-keep-hours",
    ],
)
def test_bad_command_lines_fail_before_any_engine_starts(tmp_path, args, message, fix):
    alone = engine_env(tmp_path)
    out = cli(alone, *args, *ENGINE, cwd=tmp_path, timeout=120, memory_limit=2 * 2**30)  # /dev/zero never ends
    assert out.returncode == 2, out.stderr
    error, hint = error_lines(out.stderr)
    assert error.startswith("error: ") and message in error
    assert hint.startswith("  fix: ") and fix in hint
    assert engine_pid(alone) is None and not list(tmp_path.glob("*.svg"))


# -- with the engine that `submit` starts --------------------------------------------------------------


def test_submit_two_images_to_a_folder_starts_the_engine(env, tmp_path):
    out_dir = tmp_path / "svgs"
    out_dir.mkdir()
    started = time.monotonic()
    out = cli(env, "submit", ANIMAL, VASE, "--out-dir", out_dir, *TINY, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in out_dir.iterdir()) == ["animal.svg", "vase.svg"]
    for image in (ANIMAL, VASE):
        svg = (out_dir / f"{image.stem}.svg").read_bytes()
        assert svg_layers(svg, image_size(image)) == [("4 strokes", 4, True)]
        wrote = rf"^{image.name}: wrote {re.escape(str(out_dir / image.stem))}\.svg \([\d.]+ s in the engine\)$"
        assert re.search(wrote, out.stderr, re.M), out.stderr
    assert "optimise" in out.stderr  # progress bars
    # the engine it started runs on, detached, with the options given, and frees itself when unused
    pid = engine_pid(env)
    assert pid is not None and time.monotonic() - started < READY_S + JOB_S
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert cmdline[cmdline.index(b"--models") :][:2] == [b"--models", b"tiny-random"]
    assert b"--idle-timeout" in cmdline
    assert os.getsid(pid) == pid


def test_submit_one_image_quietly_to_its_default_name(env, running, tmp_path):
    out = cli(env, "submit", VASE, *TINY, "-q", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stderr == "" and out.stdout == ""
    assert svg_layers((tmp_path / "vase.svg").read_bytes(), image_size(VASE)) == [("4 strokes", 4, True)]
    assert engine_pid(env) == running  # the warm engine served it


def test_submit_scene_writes_the_matrix(env, running, tmp_path):
    out = cli(
        env,
        "submit",
        FIELD,
        "--scene",
        "--layers",
        "2",
        "--levels",
        "1",
        "--strokes",
        "4",
        "--seeds",
        "1",
        "--iterations",
        "1",
        "--aug-bank",
        "4",
        "--mask",  # one part: the stroke counts below (scenes split by default)
        "none",
        *ENGINE,
        "-o",
        tmp_path / "field.svg",
    )
    assert out.returncode == 0, out.stderr
    assert "field.png: note: no mask" in out.stderr
    layers = svg_layers((tmp_path / "field.svg").read_bytes(), image_size(FIELD))
    # A layer per fidelity column holding a layer per cell, each with Background then Object.
    labels = [re.sub(r" - [1-4] strokes?$", " - n strokes", label) for label, _, _ in layers]
    assert labels == [
        "Fidelity 2 (ViT layer 2)",
        "Simplicity 0/1 - n strokes",
        "Background",
        "Object",
        "Simplicity 1/1 - n strokes",
        "Background",
        "Object",
    ]
    assert layers[3][1] >= 1 and layers[3][2], "the first cell's object strokes, shown"


def test_detach_then_fetch(env, running, tmp_path):
    out = cli(env, "submit", ANIMAL, VASE, "--detach", *TINY, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 2
    ids = []
    for line, image in zip(lines, (ANIMAL, VASE)):
        job_id, name = line.split("  ", 1)
        assert ID.fullmatch(job_id) and name == str(image)
        ids.append(job_id)
    assert not list(tmp_path.glob("*.svg"))  # detached: nothing written here
    for job_id, image in zip(ids, (ANIMAL, VASE)):
        fetched = cli(env, "fetch", job_id, "-o", tmp_path / f"{image.stem}.svg", cwd=tmp_path)
        assert fetched.returncode == 0, fetched.stderr
        assert svg_layers((tmp_path / f"{image.stem}.svg").read_bytes(), image_size(image))[0][1] == 4
    status = cli(env, "status")
    for job_id, image in zip(ids, (ANIMAL, VASE)):
        assert re.search(rf"^  {job_id}  done +sketch .*  {image.name}$", status.stdout, re.M), status.stdout


def test_status_describes_the_engine(env, running):
    out = cli(env, "status")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert re.fullmatch(
        rf"engine: running, pid {running}, version \S+ \(protocol {re.escape(VERSION)}\), up \d+ s", lines[0]
    )
    assert lines[1] == "device: cpu; models: tiny-random (loaded: RN101, ViT-B-32); renderer: ours"
    assert lines[2] == "running: nothing; queued: 0"


def test_a_queued_submit_shows_its_position_then_completes(env, running, tmp_path):
    with api_client(env) as api:
        blocker, _ = api.submit(*sketch_job(params=long_params()), name="blocker.png")
        wait_for(lambda: api.status()["running"] == blocker, JOB_S, "the blocking job to start")
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "submit", str(VASE), *TINY, "-o", str(tmp_path / "queued.svg")],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        chunks: list[str] = []
        reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: proc.stderr.read(1), "")), daemon=True)
        reader.start()
        try:
            wait_for(lambda: "vase.png: queued, position 1" in "".join(chunks), JOB_S, "the queue position")
            assert api.cancel(blocker) == "cancelling"
            assert proc.wait(timeout=JOB_S) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        reader.join(10)
    assert svg_layers((tmp_path / "queued.svg").read_bytes())[0][1] == 4


def test_cancel_then_fetch_reports_the_cancellation(env, running, tmp_path):
    with api_client(env) as api:
        job_id, _ = api.submit(*sketch_job(params=long_params()), name="long.png")
        wait_for(lambda: api.status()["running"] == job_id, JOB_S, "the job to start")
    out = cli(env, "cancel", job_id)
    assert out.returncode == 0 and out.stdout.strip() == f"{job_id}: cancelling"
    fetched = cli(env, "fetch", job_id, "-o", tmp_path / "never.svg", "-q")
    assert fetched.returncode == 130  # a cancelled job exits as a Ctrl-C'd `sketch` would
    assert error_lines(fetched.stderr) == ["error: the job was cancelled", "  fix: submit the image again to redo it"]
    assert not (tmp_path / "never.svg").exists()


@pytest.mark.parametrize("command", ["fetch", "cancel"])
def test_unknown_job_id_is_an_error_with_a_fix(env, running, tmp_path, command):
    args = ["fetch", "0" * 32, "-o", tmp_path / "x.svg"] if command == "fetch" else ["cancel", "0" * 32]
    out = cli(env, *args)
    assert out.returncode == 1
    error, fix = error_lines(out.stderr)
    assert error == f"error: no job '{'0' * 32}' on this engine (finished results are kept a while, then deleted)"
    assert fix == "  fix: list the engine's jobs with `sketch-abstraction status`"


def test_a_failed_image_is_reported_and_the_others_written(env, running, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = cli(env, "submit", bad, VASE, "--out-dir", out_dir, *TINY, "-q")
    assert out.returncode == 2  # bad input, the exit code `sketch` gives it
    error, fix = error_lines(out.stderr)
    assert error.startswith("notes.png: error: ") and "image" in error
    assert fix.startswith("  fix: ")
    assert sorted(p.name for p in out_dir.iterdir()) == ["vase.svg"]


def test_submit_refuses_an_engine_with_other_models(env, running, tmp_path):
    out = cli(env, "submit", VASE, "--models", "random", "--device", "cpu", "-o", tmp_path / "x.svg")
    assert out.returncode == 2
    assert error_lines(out.stderr) == [
        "error: the running engine uses tiny-random models, not random",
        "  fix: pass --models tiny-random, or stop it (`sketch-abstraction stop`) to start a new one",
    ]
    assert not (tmp_path / "x.svg").exists()


def test_submit_refuses_an_engine_with_another_renderer(env, running, tmp_path):
    out = cli(env, "submit", VASE, *TINY, "--renderer", "diffvg", "-o", tmp_path / "x.svg")
    assert out.returncode == 2
    assert error_lines(out.stderr)[0] == "error: the running engine uses ours renderer, not diffvg"
    assert not (tmp_path / "x.svg").exists()


OLD_ENGINE = """
import socket, time
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen()
print(server.getsockname()[1], flush=True)
time.sleep(120)
"""


def test_an_engine_of_another_protocol_version_is_named_and_can_be_stopped(tmp_path):
    """An engine left running from another version (here a stand-in that listens and says nothing):
    the client names the mismatch before any signature fails, and `stop` still stops it."""
    alone = engine_env(tmp_path)
    old = subprocess.Popen([sys.executable, "-c", OLD_ENGINE], stdout=subprocess.PIPE, text=True)
    try:
        port = int(old.stdout.readline())
        (Path(alone["SKETCH_ABSTRACTION_RUNTIME_DIR"]) / connection.CONNECTION_FILE).write_text(
            json.dumps(
                {
                    "port": port,
                    "key": "0" * 64,
                    "pid": old.pid,
                    "version": "0.9",
                    "ip": "127.0.0.1",
                    "transport": "tcp",
                    "added_by_0.9": True,
                }
            )
        )
        out = cli(alone, "status")
        assert out.returncode == 1
        assert error_lines(out.stderr) == [
            f"error: the running engine speaks protocol 0.9, this client {VERSION}",
            "  fix: stop that engine (`sketch-abstraction stop`); the next job starts one of this version. "
            "After an update, also re-run `python3 install.py` for Inkscape",
        ]
        stop = cli(alone, "stop")
        assert stop.returncode == 0 and stop.stdout.strip() == "engine: stopping (protocol 0.9, stopped with a signal)"
        assert old.wait(timeout=10) == -signal.SIGTERM
    finally:
        old.kill()
        old.wait()


def test_the_auto_start_command_carries_every_engine_setting():
    command = engine_command(
        "python3", "random", "cuda", "/nonexistent/weights", idle_timeout_s=60, precision="bf16", renderer="diffvg"
    )
    assert command[:4] == ["python3", "-m", "engine", "serve"]
    args = build_parser().parse_args(command[3:])  # the engine's own parser reads it back
    assert (args.models, args.device, args.weights_dir, args.precision, args.renderer, args.idle_timeout) == (
        "random",
        "cuda",
        "/nonexistent/weights",
        "bf16",
        "diffvg",
        60,
    )
    assert build_parser().parse_args(engine_command("python3")[3:]).renderer == "ours"


def test_a_second_serve_is_refused_while_one_runs(env, running):
    out = cli(env, "serve", *ENGINE)
    assert out.returncode == 75  # EX_TEMPFAIL: a client that started it waits for the running one
    assert error_lines(out.stderr) == [
        f"error: an engine is already running (pid {running})",
        "  fix: use it (sketch-abstraction status), or stop it first with `sketch-abstraction stop`",
    ]
    assert "loading models" not in out.stderr, "refused before loading any model"
    assert engine_pid(env) == running  # the first one keeps its connection file and serves on
    assert cli(env, "status").returncode == 0


def test_stop_interrupts_the_running_job_and_ends_the_engine(env, running):
    with api_client(env) as api:
        job_id, _ = api.submit(*sketch_job(params=long_params()), name="long.png")
        wait_for(lambda: api.status()["running"] == job_id, JOB_S, "the job to start")
    out = cli(env, "stop")
    assert out.returncode == 0 and out.stdout.strip() == "engine: stopping; interrupted 1 job(s)"
    wait_for(lambda: pid_gone(running), 60, "the engine to exit")
    assert not (Path(env["SKETCH_ABSTRACTION_RUNTIME_DIR"]) / connection.CONNECTION_FILE).exists()
    status = cli(env, "status")
    assert status.returncode == 3 and status.stdout.startswith("engine: not running")
    # the next submit starts a new engine, which knows the interrupted job
    fetched = cli(env, "submit", VASE, *TINY, "-q", "-o", Path(env["HOME"]) / "again.svg")
    assert fetched.returncode == 0, fetched.stderr
    again = cli(env, "fetch", job_id, "-o", Path(env["HOME"]) / "x.svg", "-q")
    assert again.returncode == 1
    assert error_lines(again.stderr)[0] == "error: the engine was stopped before this job finished"


# -- an engine that stops answering, or loses its connection file ------------------------------------


def test_an_engine_that_stops_answering_is_told_apart_from_one_not_running(tmp_path):
    """SIGSTOP the engine mid-job: the waiting client says so within its heartbeat timeout, `status`
    says it runs but does not answer, and `stop` ends it."""
    eng = Engine(tmp_path).start()
    client = EngineClient(eng.info, timeout_s=20, heartbeat_timeout_s=3)
    try:
        long_id, _ = client.submit(*sketch_job(params=long_params()), name="long.png")
        wait_for(lambda: client.status()["running"] == long_id, JOB_S, "the job to start")
        queued_id, _ = client.submit(*sketch_job(), name="queued.png")
        with pytest.raises(TimeoutError):  # 6 s without progress, yet heartbeats: the engine lives
            client.wait(queued_id, timeout_s=6)
        outcome = {}

        def pause_mid_job(msg) -> None:
            if msg.msg_type == "progress" and "paused" not in outcome:
                outcome["paused"] = time.monotonic()
                os.kill(eng.pid, signal.SIGSTOP)

        def follow() -> None:
            try:
                client.wait(long_id, on_message=pause_mid_job)
            except Exception as err:  # asserted below
                outcome["error"] = err

        waiting = threading.Thread(target=follow, daemon=True)
        waiting.start()
        waiting.join(30)
        assert not waiting.is_alive(), "the client waits on a stopped engine forever"
        err = outcome["error"]
        assert isinstance(err, EngineUnavailable) and err.code == "not_answering", err
        assert f"the engine (pid {eng.pid}) is running but has not answered" in err.message
        assert f"kill -CONT {eng.pid}" in err.hint and time.monotonic() - outcome["paused"] < 10
        status = cli(eng.env, "status", timeout=60)
        assert status.returncode == 1 and "not running" not in status.stdout
        assert "is running but has not answered" in error_lines(status.stderr)[0], status.stderr
        stop = cli(eng.env, "stop", timeout=60)
        assert stop.returncode == 0, stop.stderr
        assert stop.stdout.strip() == f"engine: stopped (pid {eng.pid} did not answer; ended with SIGTERM)"
        eng.proc.wait(timeout=30)
    finally:
        client.close()
        if eng.alive():
            os.kill(eng.pid, signal.SIGCONT)
        eng.stop()


def test_a_deleted_connection_file_is_written_again(tmp_path):
    eng = Engine(tmp_path).start()
    try:
        (eng.run_dir / connection.CONNECTION_FILE).unlink()
        status = cli(eng.env, "status", timeout=60)
        assert status.returncode == 0 and status.stdout.startswith(f"engine: running, pid {eng.pid}"), status.stderr
        started = time.monotonic()
        out = cli(eng.env, "submit", ANIMAL, *TINY, "-q", "-o", tmp_path / "a.svg")
        assert out.returncode == 0 and time.monotonic() - started < 60, out.stderr
        assert engine_pid(eng.env) == eng.pid  # the same engine served it; no second one was started
        assert "wrote it again" in eng.log_text()
    finally:
        eng.stop()


# -- messages: a closed pipe, a full disk, hostile file names, old jobs ----------------------------------


def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path):
    """`sketch-abstraction status | head -1`: no traceback, the exit code of SIGPIPE."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line
    try:
        out = subprocess.run(
            [sys.executable, "-m", "engine", "status"],
            env=engine_env(tmp_path),
            cwd=ROOT,
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write)
    assert out.returncode == 141 and out.stderr == "", out.stderr


def test_output_on_a_full_disk_says_so_and_how_to_get_the_result(tmp_path):
    env = engine_env(tmp_path)
    full = tmp_path / "full"
    full.mkdir()
    mounts = with_private_mounts(
        f"mount -t tmpfs -o size=4k tmpfs '{full}' && (head -c 8192 /dev/zero > '{full}/fill' 2>/dev/null; true)"
    )
    try:
        out = cli(env, "submit", ANIMAL, *TINY, "-q", "-o", full / "a.svg", prefix=mounts)
        assert out.returncode == 5, out.stderr
        error, fix = error_lines(out.stderr)
        assert error.startswith(f"animal.png: error: cannot write {full / 'a.svg'}: No space left on device"), error
        job_id = ID.search(fix).group()
        assert f"then `sketch-abstraction fetch {job_id} -o {full / 'a.svg'}`" in fix
        fetched = cli(env, "fetch", job_id, "-o", tmp_path / "a.svg", "-q")
        assert fetched.returncode == 0 and svg_layers((tmp_path / "a.svg").read_bytes())[0][1] == 4
        local = cli(env, "sketch", ANIMAL, *TINY, "-q", "-o", full / "b.svg", prefix=mounts)
        assert local.returncode == 5 and "Traceback" not in local.stderr, local.stderr
        assert error_lines(local.stderr)[0].startswith(f"error: cannot write {full / 'b.svg'}: No space left")
    finally:
        stop_engine(env)


def test_status_escapes_file_names_and_lists_recent_jobs_unless_asked_for_all(tmp_path):
    env = engine_env(tmp_path)
    results = Path(env["SKETCH_ABSTRACTION_DATA_DIR"]) / "results"
    results.mkdir()
    day, now = 86_400, time.time()
    stored = {  # job id: (state, finished, fetched)
        "a" * 32: ("done", now - 5 * day, None),  # never fetched: shown
        "b" * 32: ("error", now - 2 * day, None),  # failed two days ago: hidden
        "c" * 32: ("done", now - 3 * day, now - 3600),  # fetched an hour ago: hidden
    }
    for job_id, (state, finished, fetched) in stored.items():
        record = {"job_id": job_id, "name": f"{job_id[0]}.png", "kind": "sketch", "state": state}
        record.update(created=finished - 60, finished=finished, fetched=fetched, seconds=1.0, notes=[], error=None)
        (results / f"{job_id}.json").write_text(json.dumps(record))
        (results / f"{job_id}.svg").write_bytes(b"<svg/>")
    try:
        out = cli(env, "submit", ANIMAL, *TINY, "-q", "-o", tmp_path / "x.svg", "--detach")
        assert out.returncode == 0, out.stderr
        with api_client(env) as api:
            evil, _ = api.submit(*sketch_job(), name="\x1b]0;pwned\x07photo\x1b[8m.png")
        status = cli(env, "status")
        assert status.returncode == 0 and "\x1b" not in status.stdout and "\x07" not in status.stdout
        assert f"{evil}" in status.stdout and "\\x1b]0;pwned\\x07photo\\x1b[8m.png" in status.stdout
        listed = set(ID.findall(status.stdout))
        assert "a" * 32 in listed and not {"b" * 32, "c" * 32} & listed
        assert "(2 older job(s) fetched or failed; `sketch-abstraction status --all` lists them)" in status.stdout
        everything = cli(env, "status", "--all")
        assert set(stored) <= set(ID.findall(everything.stdout)) and "older job" not in everything.stdout
    finally:
        stop_engine(env)


# -- issue 22: planted links, derived paths, hostile names ------------------------------------------


def test_links_planted_at_the_output_and_its_preview_redirect_nothing(env, running, tmp_path):
    """Another user plants `out.svg -> ~victim/authorized_keys` and `out.preview.png -> ~victim/notes.txt`
    in a shared folder; the victim's `submit -o out.svg --preview-every 0.5` replaces the links, not
    their targets."""
    shared, victim = tmp_path / "shared", tmp_path / "victim"
    shared.mkdir()
    victim.mkdir()
    keys, notes = victim / "authorized_keys", victim / "notes.txt"
    keys.write_text("ssh-ed25519 AAAA victim\n")
    notes.write_text("my notes\n")
    (shared / "out.svg").symlink_to(keys)
    (shared / "out.preview.png").symlink_to(notes)
    slow = [arg if arg != "5" else "30" for arg in TINY]  # 30 iterations: time for a preview or two
    done = cli(env, "submit", ANIMAL, *slow, "-q", "-o", shared / "out.svg", "--preview-every", "0.5")
    assert done.returncode == 0, done.stderr
    assert keys.read_text() == "ssh-ed25519 AAAA victim\n" and notes.read_text() == "my notes\n"
    assert not (shared / "out.svg").is_symlink() and svg_layers((shared / "out.svg").read_bytes())
    assert sorted(p.name for p in shared.iterdir()) in (["out.preview.png", "out.svg"], ["out.svg"])
    # in a sticky folder every user can write to, such a link is refused before any work
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    (sticky / "out.svg").symlink_to(keys)
    refused = cli(env, "submit", ANIMAL, *TINY, "-q", "-o", sticky / "out.svg")
    assert refused.returncode == 2 and "symbolic link" in refused.stderr, refused.stderr
    assert keys.read_text() == "ssh-ed25519 AAAA victim\n" and (sticky / "out.svg").is_symlink()


def test_keys_export_replaces_a_planted_link_instead_of_writing_through_it(tmp_path):
    env = engine_env(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("mine\n")
    (tmp_path / "alice.json").symlink_to(victim)
    assert cli(env, "keys", "new", "alice", timeout=60).returncode == 0
    done = cli(env, "keys", "export", "alice", "--address", "127.0.0.1:5555", "-o", tmp_path / "alice.json", timeout=60)
    assert done.returncode == 0, done.stderr
    assert victim.read_text() == "mine\n"
    assert not (tmp_path / "alice.json").is_symlink() and (tmp_path / "alice.json").stat().st_mode & 0o777 == 0o600


def test_the_live_preview_may_not_overwrite_the_photo(tmp_path):
    """`submit cat.preview.png -o cat.svg --preview-every 0.5` would turn the photo into the preview."""
    env = engine_env(tmp_path)
    photo = tmp_path / "cat.preview.png"
    shutil.copy(ANIMAL, photo)
    before = photo.read_bytes()
    done = cli(env, "submit", photo, *TINY, "-o", tmp_path / "cat.svg", "--preview-every", "0.5", timeout=60)
    assert done.returncode == 2 and "live preview cat.preview.png" in done.stderr, done.stderr
    assert "is the input image" in done.stderr, done.stderr
    assert photo.read_bytes() == before and not (tmp_path / "cat.svg").exists()
    assert not list(Path(env["SKETCH_ABSTRACTION_RUNTIME_DIR"]).glob("engine.json")), "refused before any engine"


@pytest.mark.parametrize("every", ["inf", "nan", "1e9"])
def test_an_absurd_preview_interval_is_bad_input_not_a_bug(tmp_path, every):
    env = engine_env(tmp_path)
    done = cli(env, "submit", ANIMAL, *TINY, "-o", tmp_path / "x.svg", "--preview-every", every, timeout=60)
    assert done.returncode == 2 and "--preview-every must be at least 0.5" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "bug" not in done.stderr


def test_a_paused_engine_without_its_connection_file_is_named_at_once(tmp_path):
    """Issue 22: SIGSTOP plus a deleted connection file made `submit` wait 180 s, then blame the
    wrong thing (an engine "not loading models"); now it names the paused engine and `kill -CONT`."""
    env = engine_env(tmp_path)
    eng = Engine(tmp_path, env).start()
    try:
        os.kill(eng.pid, signal.SIGSTOP)
        (eng.run_dir / connection.CONNECTION_FILE).unlink()
        started = time.monotonic()
        done = cli(env, "submit", ANIMAL, *TINY, "-o", tmp_path / "x.svg", timeout=120)
        assert done.returncode != 0 and time.monotonic() - started < 60, done.stderr
        assert "is paused" in done.stderr and f"kill -CONT {eng.pid}" in done.stderr, done.stderr
    finally:
        os.kill(eng.pid, signal.SIGCONT)
        eng.stop()
