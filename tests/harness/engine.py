"""A real engine process (`python -m engine serve`, tiny random CLIP models, CPU) over loopback, and
what talks to it: clients, hand-made frames (`Raw`), job requests, the folders it runs in.

Every engine a test starts is shut down (then killed) by `Engine.stop` or a fixture's finalizer."""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
import zmq
from lxml import etree

from bridge import connection, protocol
from bridge.client import EngineClient
from bridge.params import ClipassoParams, SketchRequest, request_to_json
from bridge.protocol import DELIMITER, VERSION, Message, Session
from tests.harness.paths import ANIMAL, ROOT

SVG = "{http://www.w3.org/2000/svg}"
INKSCAPE = "{http://www.inkscape.org/namespaces/inkscape}"
READY_S = 180  # engine start: import torch, build two tiny models (~3 s here; generous for a loaded CI box)
JOB_S = 120  # bound on any one short job
ALWAYS = 100_000  # iterations (and eval interval) of a job that runs until it is cancelled


# -- helpers ---------------------------------------------------------------------------------------


def engine_env(base: Path) -> dict[str, str]:
    """Environment of an engine (and its clients) confined to `base`: own folders, own HOME, offline."""
    env = dict(os.environ)
    dirs = {name: base / name for name in ("home", "run", "data", "cache", "xdg-data", "xdg-run")}
    for folder in dirs.values():
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    env.update(
        HOME=str(dirs["home"]),
        XDG_CACHE_HOME=str(dirs["cache"]),
        XDG_DATA_HOME=str(dirs["xdg-data"]),
        XDG_RUNTIME_DIR=str(dirs["xdg-run"]),
        SKETCH_ABSTRACTION_OFFLINE="1",
        SKETCH_ABSTRACTION_RUNTIME_DIR=str(dirs["run"]),
        SKETCH_ABSTRACTION_DATA_DIR=str(dirs["data"]),
        PYTHONWARNINGS="ignore::UserWarning",
    )
    return env


def use_env(monkeypatch, env: dict[str, str]) -> None:
    """Point this (test) process at the engine of `env`, as a client started there would be."""
    for name in (
        "HOME",
        "XDG_CACHE_HOME",
        "XDG_DATA_HOME",
        "XDG_RUNTIME_DIR",
        "SKETCH_ABSTRACTION_RUNTIME_DIR",
        "SKETCH_ABSTRACTION_DATA_DIR",
    ):
        monkeypatch.setenv(name, env[name])


def wait_for(condition, timeout_s: float, what: str, interval_s: float = 0.05):
    """Poll `condition` until it returns something truthy; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


def pid_gone(pid: int) -> bool:
    return not connection.pid_alive(pid)


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """Resident memory of `pid` now (VmRSS), or at its peak so far (VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field}")


class Engine:
    """One engine process in its own folders; `client()` connects to it, `stop()` ends it for sure."""

    def __init__(self, base: Path, env: dict[str, str] | None = None):
        self.base = base
        self.env = env or engine_env(base)
        self.run_dir = Path(self.env["SKETCH_ABSTRACTION_RUNTIME_DIR"])
        self.data_dir = Path(self.env["SKETCH_ABSTRACTION_DATA_DIR"])
        self.proc: subprocess.Popen | None = None
        self.clients: list[EngineClient] = []
        self.log_path = base / "engine-stderr.log"

    def start(
        self, *extra: str, models: str = "tiny-random", prefix: tuple[str, ...] = (), memory_limit: int | None = None
    ) -> Engine:
        """Start it (`prefix`: a command that runs it, e.g. in a namespace, and execs it: same pid;
        `memory_limit`: its address space in bytes, so that a test can never take the machine's memory)."""
        self.log = open(self.log_path, "ab")  # noqa: SIM115 (the engine writes it until stop())

        def cap() -> None:
            resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))

        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "engine", "serve", "--models", models, "--device", "cpu", *extra],
            env=self.env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=self.log,
            preexec_fn=cap if memory_limit else None,
        )
        wait_for(self._ready, READY_S, "the engine's connection file")
        return self

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"the engine exited ({self.proc.returncode}) while starting:\n{self.log_text()[-3000:]}")
        try:
            return json.loads((self.run_dir / connection.CONNECTION_FILE).read_text())["pid"] == self.proc.pid
        except (OSError, ValueError, KeyError):
            return False

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def info(self) -> connection.ConnectionInfo:
        return connection.ConnectionInfo(**json.loads((self.run_dir / connection.CONNECTION_FILE).read_text()))

    def client(self, timeout_s: float = 20.0) -> EngineClient:
        client = EngineClient(self.info, timeout_s=timeout_s)
        self.clients.append(client)
        return client

    def raw(self) -> Raw:
        return Raw(self.info)

    def log_text(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        for client in self.clients:
            with contextlib.suppress(Exception):
                client.close()
        self.clients.clear()
        if self.alive():
            try:
                with EngineClient(self.info, timeout_s=5) as client:
                    client.shutdown()
                self.proc.wait(timeout=30)
            except Exception:
                self.proc.kill()
                self.proc.wait(timeout=30)
        if self.proc is not None:
            self.log.close()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)


class Raw:
    """A bare DEALER for hand-made frames; replies are checked with the real key."""

    def __init__(self, info: connection.ConnectionInfo, password: bytes | None = None, handshake: bool = True):
        """`password`: the PLAIN handshake's (default: the one the key gives, as clients send it);
        without `handshake`, none at all (ZeroMQ's NULL mechanism)."""
        self.session = Session(info.key)
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        if handshake:
            self.socket.plain_username = protocol.PLAIN_USER
            self.socket.plain_password = protocol.plain_password(info.key) if password is None else password
        self.socket.connect(info.url)

    def signed(self, header: dict | bytes, content: dict | bytes = b"{}", buffers=(), parent: bytes = b"{}"):
        header = header if isinstance(header, bytes) else json.dumps(header).encode()
        content = content if isinstance(content, bytes) else json.dumps(content).encode()
        parts = [header, parent, b"{}", content]
        return [DELIMITER, self.session.sign([*parts, *buffers]), *parts, *buffers]

    def send(self, frames: list[bytes]) -> None:
        self.socket.send_multipart(frames)

    def recv(self, timeout_s: float = 10.0) -> Message | None:
        """The next reply (routing frames we sent ahead of the delimiter come back first; skipped)."""
        if not self.socket.poll(int(timeout_s * 1000)):
            return None
        _ids, frames = self.session.split_ids(self.socket.recv_multipart())
        return self.session.deserialize(frames, protocol.REPLIES)

    def reply(self, timeout_s: float = 20.0) -> Message | None:
        """The next reply to a request, past the messages about jobs (queue_update, progress, ...)."""
        while (msg := self.recv(timeout_s)) is not None and msg.msg_type in ("queue_update", "progress", "heartbeat"):
            pass
        return msg

    def close(self) -> None:
        self.socket.close()
        self.context.term()


def with_private_mounts(setup: str) -> tuple[str, ...]:
    """A command prefix that runs shell `setup` (mounts) in a mount namespace of its own, then execs
    the command there; the test is skipped where no namespace can be made (needs root or user
    namespaces). Mounts made there are invisible to the rest of the machine."""
    shell = ("sh", "-c", f'{setup} && exec "$@"', "sh")
    for unshare in (("unshare", "--mount"), ("unshare", "--user", "--map-root-user", "--mount")):
        probe = [*unshare, "sh", "-c", 'd=$(mktemp -d) && mount -t tmpfs tmpfs "$d" && umount "$d" && rmdir "$d"']
        if shutil.which("unshare") and subprocess.run(probe, capture_output=True).returncode == 0:
            return (*unshare, *shell)
    pytest.skip("cannot make a mount namespace here (needs root or user namespaces)")


def header(msg_type: str = "status_request", **fields) -> dict:
    return {
        "msg_id": os.urandom(8).hex(),
        "msg_type": msg_type,
        "version": VERSION,
        "date": protocol.timestamp(),
        **fields,
    }


def tiny_params(**fields) -> ClipassoParams:
    """A job of a second or so: 4 strokes, one seed, a few iterations, a small augmentation bank."""
    base = dict(strokes=(4,), seeds=(0,), iterations=5, eval_every=5, aug_bank=4)
    base.update(fields)
    return ClipassoParams(**base)


def long_params() -> ClipassoParams:
    """A job that never converges and runs until cancelled (eval only at iteration 0)."""
    return tiny_params(iterations=ALWAYS, eval_every=ALWAYS)


def sketch_job(image: Path | bytes = ANIMAL, params: ClipassoParams | None = None, **request):
    return request_to_json(SketchRequest(image, params or tiny_params(), **request))


def svg_layers(svg: bytes, size: tuple[int, int] | None = None) -> list[tuple[str, int, bool]]:
    """(label, number of paths, visible) of each Inkscape layer of an SVG (which must parse)."""
    root = etree.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    if size is not None:
        assert (float(root.get("width")), float(root.get("height"))) == size
        assert [float(v) for v in root.get("viewBox").split()] == [0, 0, *size]
    layers = []
    for group in root.iter(f"{SVG}g"):
        if group.get(f"{INKSCAPE}groupmode") == "layer":
            paths = group.findall(f"{SVG}path")
            for path in paths:
                assert re.match(r"M [-\d.e]+ [-\d.e]+ C", path.get("d")), path.get("d")
            layers.append((group.get(f"{INKSCAPE}label"), len(paths), "display:none" not in (group.get("style") or "")))
    return layers


def image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        return float(im.width), float(im.height)


def collect(messages: list):
    return lambda msg: messages.append((time.monotonic(), msg.msg_type, dict(msg.content)))


def wait_idle(client: EngineClient, timeout_s: float = JOB_S) -> dict:
    return wait_for(
        lambda: (s := client.status())["running"] is None and not s["queue"] and s, timeout_s, "the engine to be idle"
    )


def wait_running(client: EngineClient, job_id: str) -> None:
    wait_for(lambda: client.status()["running"] == job_id, JOB_S, f"job {job_id} to start", 0.02)


def png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A valid, fully decodable 1-bit PNG of ~110 KB claiming width x height pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\0" * (1 + (width + 7) // 8)
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
        + chunk(b"IDAT", data)
        + chunk(b"IEND", b"")
    )


def cli(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "engine", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def engine(tmp_path_factory):
    """One warm tiny-model engine shared by every test module that asks for it (each test leaves it
    idle; a test that changes what the engine is, or ends it, starts its own with `fresh`)."""
    eng = Engine(tmp_path_factory.mktemp("engine")).start()
    yield eng
    eng.stop()


@pytest.fixture
def fresh(tmp_path):
    """Folders for engines a test starts itself; every engine that ran in them is gone afterwards."""
    engines: list[Engine] = []
    env = engine_env(tmp_path)

    def make() -> Engine:
        eng = Engine(tmp_path, env)
        engines.append(eng)
        return eng

    make.env = env
    yield make
    for eng in engines:
        eng.stop()
    # engines the client started (detached): the connection file names them
    info_path = Path(env["SKETCH_ABSTRACTION_RUNTIME_DIR"]) / connection.CONNECTION_FILE
    try:
        pid = json.loads(info_path.read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return
    if connection.pid_alive(pid):
        try:
            with EngineClient(connection.ConnectionInfo(**json.loads(info_path.read_text())), timeout_s=5) as c:
                c.shutdown()
            wait_for(lambda: pid_gone(pid), 30, "the auto-started engine to exit")
        except BaseException:
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def client(engine):
    """A client of the shared engine, once the engine is idle."""
    c = engine.client()
    wait_idle(c)
    return c


@pytest.fixture(scope="session")
def remote(tmp_path_factory):
    """An engine listening on 127.0.0.1:PORT with CURVE, and connection files of alice, bob and carol, for
    the session (tests/test_remote_engine.py revokes carol: other modules use alice and bob)."""
    eng = curve_engine(tmp_path_factory.mktemp("remote"), ("alice", "bob", "carol"))
    yield eng
    eng.stop()


def curve_engine(base: Path, names: tuple[str, ...]) -> Engine:
    """A started engine under `base` listening on 127.0.0.1:PORT with CURVE; `eng.files[name]` is
    the connection file of each of `names` (a key each), `eng.port` its port."""
    env = engine_env(base)
    port = free_port()
    files = {}
    for name in names:
        cli(env, "keys", "new", name)
        files[name] = base / f"{name}.json"
        cli(env, "keys", "export", name, "--address", f"127.0.0.1:{port}", "-o", str(files[name]))
    eng = Engine(base, env).start("--listen", f"127.0.0.1:{port}")
    eng.port, eng.files = port, files
    return eng


def designer(remote, name: str, timeout_s: float = 20.0) -> EngineClient:
    client = EngineClient.connect(remote=remote.files[name], timeout_s=timeout_s)
    remote.clients.append(client)
    return client
