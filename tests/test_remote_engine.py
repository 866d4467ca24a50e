"""An engine serving the network (`serve --listen 127.0.0.1:PORT`): CurveZMQ, allowed keys, jobs per identity.

The real engine process with tiny random models, its `keys` and client commands, on 127.0.0.1 only.
Designers are played by remote connection files from `keys export`; strangers by keys the engine
never allowed, and by clients that do not speak CURVE at all.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from bridge import connection, protocol
from bridge.client import ClientError, EngineClient, JobFailed, Refused
from bridge.protocol import DELIMITER
from tests.harness.engine import (
    JOB_S,
    cli,
    designer,
    engine_env,
    free_port,
    long_params,
    sketch_job,
    svg_layers,
    wait_for,
)
from tests.harness.paths import ANIMAL

PATH = "{http://www.w3.org/2000/svg}path"

pytestmark = [
    pytest.mark.slow,  # the real engine process
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX process handling"),
]


class Relay:
    """A TCP relay on 127.0.0.1 that forwards to `port` and keeps every byte it passes, both ways."""

    def __init__(self, port: int):
        self.target = port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.seen = bytearray()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                down, _ = self.server.accept()
                up = socket.create_connection(("127.0.0.1", self.target))
                for a, b in ((down, up), (up, down)):
                    threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                with self.lock:
                    self.seen += data
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.server.close()


def results(remote) -> set[str]:
    return {p.name for p in (remote.data_dir / "results").glob("*.json")}


def test_the_remote_connection_file_is_private_and_names_the_engine(remote):
    path = remote.files["alice"]
    assert path.stat().st_mode & 0o777 == 0o600
    info = connection.read_remote(path)
    assert (info.ip, info.port, info.remote, info.curve) == ("127.0.0.1", remote.port, True, True)
    local = remote.info  # this machine's connection file: CURVE too, with a key pair of its own
    assert local.curve and local.server_key == info.server_key and local.public_key != info.public_key
    path.chmod(0o644)
    try:
        with pytest.raises(Exception, match="readable by other users"):
            EngineClient.connect(remote=path)
    finally:
        path.chmod(0o600)


def test_an_allowed_key_runs_a_job_end_to_end(remote, tmp_path):
    """`submit --remote FILE` from a designer's machine: the SVG comes back and is written there."""
    designer_env = engine_env(tmp_path / "designer")  # another machine: no engine, no keys of its own
    out = tmp_path / "out"
    out.mkdir()
    done = cli(
        designer_env,
        "submit",
        "--remote",
        str(remote.files["alice"]),
        str(ANIMAL),
        "--out-dir",
        str(out),
        "--strokes",
        "4",
        "--iterations",
        "5",
        "--seeds",
        "1",
    )
    assert "wrote" in done.stderr
    assert svg_layers((out / "animal.svg").read_bytes())[0][1] == 4
    assert not list(Path(designer_env["SKETCH_ABSTRACTION_RUNTIME_DIR"]).iterdir()), "no engine was started here"
    status = cli(designer_env, "status", "--remote", str(remote.files["alice"])).stdout
    assert "animal.png" in status and "device: cpu" in status


def locked_sketch(folder: Path) -> tuple[Path, bytes]:
    """A 4-stroke sketch of the animal, its second path ("mine") locked; the locked path as written."""
    from lxml import etree

    from engine.strokes import Sketch, StrokeLayer
    from engine.svg import sketch_to_svg

    points = np.random.default_rng(0).uniform(20, 220, (4, 4, 2))  # photo px of the 248 x 248 animal
    root = etree.fromstring(sketch_to_svg(Sketch(248, 248, (StrokeLayer("4 strokes", points),))))
    locked = root.findall(f".//{PATH}")[1]
    locked.set("id", "mine")
    locked.set("{http://sodipodi.sourceforge.net/DTD/sodipodi-0.dtd}insensitive", "true")
    sketch = folder / "animal.svg"
    sketch.write_bytes(etree.tostring(root))
    return sketch, etree.tostring(locked)


def assert_refined_in_place(out: Path, locked: bytes, count: int) -> None:
    from lxml import etree

    paths = etree.parse(str(out)).getroot().findall(f".//{PATH}")
    assert len(paths) == count and [p.get("id") for p in paths].count("mine") == 1
    assert etree.tostring(next(p for p in paths if p.get("id") == "mine")) == locked
    assert all(p.get("{https://sketch-abstraction.org/ns}importance") for p in paths if p.get("id") != "mine")


REFINE_FAST = ("--iterations", "11", "--aug-bank", "4")


def test_refine_with_remote_runs_on_the_shared_engine_and_writes_the_layer_back_in_place(remote, tmp_path):
    """`refine --remote FILE`: the same refine request over the bridge; the designer's file is written
    back as `refine` writes it here (locked path untouched, added strokes after the others). `fetch
    --refine` writes that job's result back the same way; `submit --refine` queues a refine job."""
    designer_env = engine_env(tmp_path / "designer")
    sketch, locked = locked_sketch(tmp_path)
    alice = ("--remote", str(remote.files["alice"]))
    out = tmp_path / "refined.svg"
    done = cli(designer_env, "refine", str(ANIMAL), str(sketch), *alice, "--add", "2", *REFINE_FAST, "-o", str(out))
    assert "6 strokes, 1 locked, 2 added" in done.stderr and f"wrote {out}" in done.stderr, done.stderr
    assert_refined_in_place(out, locked, 6)
    assert not list(Path(designer_env["SKETCH_ABSTRACTION_RUNTIME_DIR"]).iterdir()), "no engine was started here"

    [job_id] = re.findall(r"(\S+)\s+done\s+refine .* animal\.png", cli(designer_env, "status", *alice).stdout)
    again = tmp_path / "fetched.svg"
    cli(designer_env, "fetch", job_id, *alice, "--refine", str(sketch), "--layer", "4 strokes", "-o", str(again))
    assert again.read_bytes() == out.read_bytes(), "fetch --refine writes the sketch back as refine does"
    wrong = cli(designer_env, "fetch", job_id, *alice, "--refine", str(ANIMAL), "-o", str(tmp_path / "x"), check=False)
    assert wrong.returncode == 2 and "is not an SVG file" in wrong.stderr, wrong.stderr

    submit = ("submit", *alice, "--refine", str(sketch), "--simplify", "3", *REFINE_FAST, "--detach", str(ANIMAL))
    queued = cli(designer_env, *submit).stdout.split()[0]
    status = cli(designer_env, "status", *alice).stdout
    assert re.search(rf"{queued}\s+\S+\s+refine ", status), status
    cli(designer_env, "cancel", queued, *alice)  # its result is fetched as above; no second optimisation here
    with contextlib.suppress(JobFailed):  # cancelled, or done if it was quicker than the cancel
        designer(remote, "alice").wait(queued, timeout_s=JOB_S)  # over before the next test's jobs
    both = cli(designer_env, "submit", *alice, "--refine", str(sketch), "--scene", str(ANIMAL), check=False)
    assert both.returncode == 2 and "give exactly one IMAGE, and no --scene" in both.stderr, both.stderr


def test_an_unknown_key_and_a_plain_client_are_refused_without_any_work(remote, tmp_path):
    before = results(remote)
    # A key pair the engine never allowed, with the right server key and signing key.
    stranger_file = tmp_path / "stranger.json"
    data = json.loads(remote.files["alice"].read_text())
    public, secret = zmq.curve_keypair()
    data.update(public_key=public.decode(), secret_key=secret.decode())
    stranger_file.write_text(json.dumps(data))
    stranger_file.chmod(0o600)
    started = time.monotonic()
    with pytest.raises(Refused, match="refused this connection file's key"):
        EngineClient.connect(remote=stranger_file)
    assert time.monotonic() - started < 5, "a refusal is named at once, not waited out"
    # Clients without CURVE: PLAIN with the key-derived password (what loopback engines take), and NULL.
    info = connection.read_remote(remote.files["alice"])
    session = protocol.Session(info.key)
    context = zmq.Context()
    try:
        sockets = []
        for plain in (True, False):
            sock = context.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDTIMEO, 2000)
            if plain:
                sock.plain_username = protocol.PLAIN_USER
                sock.plain_password = protocol.plain_password(info.key)
            sock.connect(info.url)
            job, buffers = sketch_job()
            with contextlib.suppress(zmq.Again):
                for part in session.parts(protocol.Message("submit_request", {"job": job, "name": "x.png"}, buffers)):
                    sock.send_multipart(part)
            sockets.append(sock)
        time.sleep(2)
        assert not any(sock.poll(500) for sock in sockets), "a non-CURVE client got an answer"
    finally:
        context.destroy(linger=0)
    assert results(remote) == before, "the engine took a job from a stranger"
    assert "its key is not allowed" in remote.log_text()
    assert designer(remote, "alice").status()["pid"] == remote.pid


def test_the_wire_carries_no_plaintext(remote):
    """Through a relay: the handshake, the request, the photo and the SVG all travel encrypted."""
    relay = Relay(remote.port)
    relayed = remote.files["alice"].with_name("alice-relayed.json")
    data = json.loads(remote.files["alice"].read_text())
    data["port"] = relay.port
    relayed.write_text(json.dumps(data))
    relayed.chmod(0o600)
    try:
        with EngineClient.connect(remote=relayed, timeout_s=20) as client:
            job, buffers = sketch_job()
            job_id, _ = client.submit(job, buffers, name="private-photo.png")
            result = client.wait(job_id, timeout_s=JOB_S)
        with relay.lock:
            seen = bytes(relay.seen)
    finally:
        relay.close()
    assert len(seen) > len(buffers[0]) + len(result.svg), "the relay did not see the traffic"
    for plaintext in (b"msg_type", b"submit_request", b"private-photo", job_id.encode(), b"<svg", b"\x89PNG", b"IHDR"):
        assert plaintext not in seen, plaintext
    assert DELIMITER not in seen


def test_a_client_cannot_see_fetch_or_cancel_another_clients_job(remote):
    alice, bob = designer(remote, "alice"), designer(remote, "bob")
    job, buffers = sketch_job(params=long_params())
    job_id, _ = alice.submit(job, buffers, name="alice-only.png")
    try:
        wait_for(lambda: alice.status()["running"] == job_id, JOB_S, "alice's job to start")
        for attempt in (bob.fetch, bob.cancel):
            with pytest.raises(JobFailed) as failure:
                attempt(job_id)
            assert failure.value.code == protocol.UNKNOWN_JOB
        assert job_id not in {j["job_id"] for j in bob.jobs()}
        status = bob.status()
        assert status["running"] is None and status["queue"] == [] and status["others"] == 1
        assert alice.fetch(job_id)["state"] == "running"  # bob's attempts changed nothing
    finally:
        assert alice.cancel(job_id) in ("cancelling", "cancelled")
    with pytest.raises(JobFailed, match="cancelled"):
        alice.wait(job_id, timeout_s=JOB_S)


def test_the_queue_takes_turns_between_clients(remote):
    """alice queues three jobs, then bob one: bob's runs second, not fourth."""
    alice, bob = designer(remote, "alice"), designer(remote, "bob")
    first, buffers = sketch_job(params=long_params())
    running, _ = alice.submit(first, buffers, name="a1.png")
    job, buffers = sketch_job()
    waiting = [alice.submit(job, buffers, name=f"a{i}.png")[0] for i in (2, 3)]
    bobs, position = bob.submit(job, buffers, name="b1.png")
    try:
        assert position == 1
        assert [j["position"] for j in alice.status()["queue"]] == [0, 2, 3]
        alice.cancel(running)
        bob.wait(bobs, timeout_s=JOB_S)
        for job_id in waiting:
            alice.wait(job_id, timeout_s=JOB_S)
        finished = {j["job_id"]: j["finished"] for j in [*alice.jobs(), *bob.jobs()]}
        assert finished[bobs] < finished[waiting[0]] < finished[waiting[1]]
    finally:
        for job_id in waiting:
            with contextlib.suppress(JobFailed):
                alice.cancel(job_id)


def test_a_revoked_key_is_refused_at_once_also_on_an_open_connection(remote):
    carol = designer(remote, "carol")
    assert carol.status()["pid"] == remote.pid
    cli(remote.env, "keys", "revoke", "carol")
    with pytest.raises(JobFailed) as failure:
        carol.status()  # the connection admitted before the revocation
    assert failure.value.code == protocol.FORBIDDEN
    with pytest.raises(Refused):
        EngineClient.connect(remote=remote.files["carol"])
    assert "carol" in cli(remote.env, "keys", "list").stdout
    assert designer(remote, "alice").status()["pid"] == remote.pid  # the others are served on


def test_only_this_machine_can_stop_the_engine(remote):
    with pytest.raises(JobFailed) as failure:
        designer(remote, "alice").shutdown()
    assert failure.value.code == protocol.FORBIDDEN
    assert remote.alive()
    assert remote.client().status()["pid"] == remote.pid  # the local client (CURVE, its own key pair)


def test_keys_commands_refuse_bad_input(tmp_path):
    env = engine_env(tmp_path)
    for args, words in (
        (("keys", "new", "../evil"), "not a usable key name"),
        (("keys", "export", "nobody", "--address", "127.0.0.1:5555"), "no key pair named nobody"),
        (("keys", "revoke", "nobody"), "no allowed key named nobody"),
        (("keys", "allow", str(ANIMAL)), "is not a public key file"),
        (("serve", "--listen", "127.0.0.1"), "is not HOST:PORT"),
        (("serve", "--listen", "127.0.0.1:70000"), "is not HOST:PORT"),
    ):
        done = cli(env, *args, check=False)
        assert done.returncode == 2 and words in done.stderr, (args, done.stderr)
    cli(env, "keys", "new", "dana")
    done = cli(env, "keys", "new", "dana", check=False)
    assert done.returncode == 2 and "exists already" in done.stderr
    secret = Path(env["SKETCH_ABSTRACTION_DATA_DIR"]) / "keys" / "clients" / "dana.key_secret"
    assert os.stat(secret).st_mode & 0o077 == 0


def test_a_remote_file_of_another_protocol_version_names_the_fix(tmp_path):
    server, client = zmq.curve_keypair(), zmq.curve_keypair()
    path = tmp_path / "old.json"
    fields = {"ip": "127.0.0.1", "port": free_port(), "key": protocol.new_key(), "version": "1.0"}
    keys = {"server_key": server[0], "public_key": client[0], "secret_key": client[1]}
    path.write_text(json.dumps({**fields, **{k: v.decode() for k, v in keys.items()}}))
    path.chmod(0o600)
    with pytest.raises(ClientError, match=r"is for protocol 1\.0") as failure:
        EngineClient.connect(remote=path)
    assert "keys export" in failure.value.hint


# --- Inkscape on a shared engine: the computing engine's models name the result (issue 13) ----------


@pytest.mark.skipif(shutil.which("inkscape") is None, reason="Inkscape is not installed (.ci/run installs it)")
def test_a_sketch_from_a_shared_engine_with_test_models_says_so_whatever_this_computer_is_set_up_for(remote, tmp_path):
    """This computer's extension is set up for the real ("openai") models; the shared engine runs
    tiny random ones: the layer carries the test-models tag, because that engine computed it."""
    from tests.harness.inkscape import FAST, SYSTEM_EXTENSIONS, TAG, embedded_svg, install_for_tests, run_script

    installed = install_for_tests(tmp_path)
    config = installed["ext"] / "engine.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "models": "openai"}))
    doc = embedded_svg(tmp_path / "doc.svg", [{"id": "img1"}])
    shared = ("--engine=remote", f"--remote={remote.files['alice']}")
    out = run_script({**installed, "inkex": SYSTEM_EXTENSIONS}, "sketch_object.py", doc, "--id=img1", *FAST, *shared)
    assert out.returncode == 0, out.stderr.decode()
    labels = re.findall(rb'inkscape:label="([^"]*)"', out.stdout)
    assert [label for label in labels if label.startswith(b"Sketch of")] == [f"Sketch of img1{TAG}".encode()]


# -- the queue's share per client (issue 15 review) ---------------------------------------------------


def test_one_client_filling_its_share_of_the_queue_leaves_room_for_another(remote):
    """alice has one job running and 100 waiting (her share): her next is refused, bob's goes in and runs."""
    alice, bob = designer(remote, "alice"), designer(remote, "bob")
    job, buffers = sketch_job(params=long_params())
    running, _ = alice.submit(job, buffers, name="a-long.png")
    job, buffers = sketch_job()
    waiting = [alice.submit(job, buffers, name=f"a{i}.png")[0] for i in range(100)]
    try:
        with pytest.raises(JobFailed) as full:
            alice.submit(job, buffers, name="a-one-too-many.png")
        assert full.value.code == protocol.QUEUE_FULL
        bobs, position = bob.submit(job, buffers, name="b1.png")
        assert position == 1  # and ahead of alice's 100: the queue takes turns
        assert "queue is full for you (100 jobs" in full.value.message
    finally:
        for job_id in [running, *waiting]:
            alice.cancel(job_id)
    assert svg_layers(bob.wait(bobs, timeout_s=JOB_S).svg)[0][1] == 4
