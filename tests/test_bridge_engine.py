"""The real engine process (`python -m engine serve`, tiny random CLIP models, CPU) over loopback.

No mocks: every test talks to a separate engine process through ZeroMQ, as the Inkscape extension
and `sketch-abstraction submit` do. Engines run in temp runtime/data folders with HOME isolated,
and every engine a test starts is shut down (then killed) by a finalizer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import zmq
from lxml import etree

from bridge import connection, protocol
from bridge.client import ClientError, EngineClient, EngineUnavailable, JobFailed, JobResult
from bridge.launcher import engine_command
from bridge.params import SceneParams, SceneRequest, request_to_json
from bridge.protocol import DELIMITER, VERSION, Message, Session
from tests.harness.engine import (
    INKSCAPE,
    JOB_S,
    SVG,
    Engine,
    Raw,
    collect,
    engine_env,
    header,
    image_size,
    long_params,
    pid_gone,
    png_bomb,
    rss_kib,
    sketch_job,
    svg_layers,
    tiny_params,
    use_env,
    wait_for,
    wait_idle,
    wait_running,
    with_private_mounts,
)
from tests.harness.paths import ANIMAL, FIELD, ROOT, VASE

pytestmark = [
    pytest.mark.slow,  # the real engine process
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX process handling"),
]

# -- fixtures (the shared `engine`, `client` and `fresh` are tests/harness/engine.py's) ------------------


@pytest.fixture(scope="module")
def small_engine(tmp_path_factory):
    """An engine that accepts messages of at most 0.5 MiB (zmq drops single frames over 1 MiB)."""
    eng = Engine(tmp_path_factory.mktemp("small")).start("--max-message-mb", "0.5")
    yield eng
    eng.stop()


# -- the ordinary path -----------------------------------------------------------------------------


def test_status_describes_the_warm_engine(engine, client):
    s = client.status()
    assert s["protocol"] == VERSION and s["version"]
    assert s["pid"] == engine.pid
    assert s["device"] == "cpu" and s["models"] == "tiny-random"
    assert s["loaded"] == ["RN101", "ViT-B-32"]  # loaded before the engine announced itself
    assert s["running"] is None and s["queue"] == []


def test_submit_streams_progress_then_the_layered_svg(engine, client):
    job, buffers = sketch_job(ANIMAL, tiny_params(strokes=(6, 3), iterations=12, eval_every=12), color="#aa0000")
    job_id, position = client.submit(job, buffers, name="horse.png")
    assert re.fullmatch(r"[0-9a-f]{32}", job_id) and position == 0
    messages: list = []
    result = client.wait(job_id, on_message=collect(messages), timeout_s=JOB_S)

    progress = [content for _, kind, content in messages if kind == "progress"]
    assert progress, "no progress before the result"
    for p in progress:
        assert p["job_id"] == job_id
        assert {"stage", "iteration", "total", "loss", "eta_s", "detail"} <= set(p)
        assert 0 <= p["iteration"] <= p["total"]
    optimise = [p for p in progress if p["stage"] == "optimise"]
    assert optimise and all(p["total"] == 12 for p in optimise)
    assert [p["iteration"] for p in optimise] == sorted(p["iteration"] for p in optimise)
    assert optimise[-1]["iteration"] == 12  # the last iteration is always reported
    assert progress[0]["stage"] != "optimise"  # loading and initialisation are reported too

    assert isinstance(result, JobResult) and result.job_id == job_id
    assert result.name == "horse.png" and result.kind == "sketch" and result.seconds > 0
    layers = svg_layers(result.svg, image_size(ANIMAL))
    assert layers == [("6 strokes", 6, True), ("3 strokes", 3, False)]
    assert b"stroke:#aa0000" in result.svg

    # the result stays fetchable by id, byte for byte, and the job list shows it done
    again = engine.client().fetch(job_id)
    assert isinstance(again, JobResult) and again.svg == result.svg
    listed = {j["job_id"]: j for j in client.jobs()}[job_id]
    assert listed["state"] == "done" and listed["name"] == "horse.png" and "position" not in listed
    assert (engine.data_dir / "results" / f"{job_id}.svg").read_bytes() == result.svg


def test_a_scene_job_runs_through_the_engine(engine, client):
    params = SceneParams(layers=(2,), levels=1, strokes=4, seeds=(0,), iterations=1, aug_bank=4)
    job, buffers = request_to_json(SceneRequest(FIELD, params, mask="none"))  # one part: the counts below
    job_id, _ = client.submit(job, buffers, name="bull.png")
    messages: list = []
    result = client.wait(job_id, on_message=collect(messages), timeout_s=JOB_S)
    assert result.kind == "scene" and result.name == "bull.png"
    assert any(kind == "progress" and c["stage"] == "optimise" for _, kind, c in messages)
    root = etree.fromstring(result.svg)
    columns = [g for g in root.findall(f"{SVG}g") if g.get(f"{INKSCAPE}groupmode") == "layer"]
    assert [g.get(f"{INKSCAPE}label") for g in columns] == ["Fidelity 2 (ViT layer 2)"]
    cells = columns[0].findall(f"{SVG}g")
    counts = [re.fullmatch(r"Simplicity (\d)/1 - (\d) strokes?", g.get(f"{INKSCAPE}label")).groups() for g in cells]
    assert [row for row, _ in counts] == ["0", "1"]
    assert all(1 <= int(n) <= 4 for _, n in counts)  # the strokes that show: 4 at most, the simplified row some
    objects = [len(g.find(f"{SVG}g[@{INKSCAPE}label='Object']").findall(f"{SVG}path")) for g in cells]
    assert all(paths >= int(n) for paths, (_, n) in zip(objects, counts))  # a stroke may show as pieces


def test_three_clients_queue_and_all_complete(engine, client):
    """Jobs run one at a time; the others learn their place in the queue and move up."""
    first, second, third = engine.client(), engine.client(), engine.client()
    a_id, a_pos = first.submit(*sketch_job(ANIMAL, tiny_params(iterations=30, eval_every=30)), name="a.png")
    wait_running(client, a_id)
    b_id, b_pos = second.submit(*sketch_job(VASE, tiny_params(strokes=(3,))), name="b.png")
    c_id, c_pos = third.submit(*sketch_job(VASE, tiny_params(strokes=(2,))), name="c.png")
    assert (a_pos, b_pos, c_pos) == (0, 1, 2)
    queue = {j["job_id"]: j["position"] for j in client.status()["queue"]}
    assert queue == {a_id: 0, b_id: 1, c_id: 2}

    results, messages, errors = {}, {a_id: [], b_id: [], c_id: []}, []

    def follow(c: EngineClient, job_id: str) -> None:
        try:
            results[job_id] = (time.monotonic(), c.wait(job_id, on_message=collect(messages[job_id]), timeout_s=JOB_S))
        except BaseException as err:  # reported below, in the test's thread
            errors.append(err)

    threads = [threading.Thread(target=follow, args=args) for args in ((first, a_id), (second, b_id), (third, c_id))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOB_S * 3)
    assert not errors, errors
    assert set(results) == {a_id, b_id, c_id}
    assert [layer[1] for layer in svg_layers(results[a_id][1].svg)] == [4]
    assert [layer[1] for layer in svg_layers(results[b_id][1].svg)] == [3]
    assert [layer[1] for layer in svg_layers(results[c_id][1].svg)] == [2]

    def updates(job_id):
        return [c["position"] for _, kind, c in messages[job_id] if kind == "queue_update"]

    assert updates(b_id) == [0]  # moved to the front when the first job ended
    assert updates(c_id) == [1, 0]

    # one at a time: each job's progress begins only after the previous job's result arrived
    def first_progress(job_id):  # optimisation starts well after the job does (saliency, edges first)
        return min(t for t, kind, c in messages[job_id] if kind == "progress" and c["stage"] == "optimise")

    assert results[a_id][0] < first_progress(b_id) and results[b_id][0] < first_progress(c_id)


def test_cancel_a_running_job(engine, client):
    job_id, _ = client.submit(*sketch_job(params=long_params()), name="long.png")
    other = engine.client()
    states = []

    def on_message(msg):
        if msg.msg_type == "progress" and msg.content["stage"] == "optimise" and not states:
            states.append(other.cancel(job_id))

    started = time.monotonic()
    with pytest.raises(JobFailed) as failed:
        client.wait(job_id, on_message=on_message, timeout_s=JOB_S)
    assert states == ["cancelling"]
    assert failed.value.code == "cancelled" and failed.value.job_id == job_id and failed.value.hint
    assert time.monotonic() - started < 60  # it stopped; it did not run 100000 iterations
    with pytest.raises(JobFailed) as fetched:
        other.fetch(job_id)
    assert fetched.value.code == "cancelled"
    assert {j["job_id"]: j["state"] for j in client.jobs()}[job_id] == "cancelled"
    assert not (engine.data_dir / "results" / f"{job_id}.svg").exists()
    wait_idle(client)
    # and the engine goes on serving
    assert svg_layers(client.wait(client.submit(*sketch_job(), name="next.png")[0], timeout_s=JOB_S).svg)[0][1] == 4


def test_cancel_a_queued_job(engine, client):
    long_id, _ = client.submit(*sketch_job(params=long_params()), name="long.png")
    wait_running(client, long_id)
    queued_id, position = client.submit(*sketch_job(), name="queued.png")
    last_id, last_position = client.submit(*sketch_job(VASE), name="last.png")
    assert (position, last_position) == (1, 2)

    assert engine.client().cancel(queued_id) == "cancelled"  # at once: it never ran
    with pytest.raises(JobFailed) as failed:
        client.wait(queued_id, timeout_s=10)
    assert failed.value.code == "cancelled"
    assert {j["job_id"]: j["position"] for j in client.status()["queue"]} == {long_id: 0, last_id: 1}

    assert client.cancel(long_id) == "cancelling"
    result = client.wait(last_id, timeout_s=JOB_S)  # the worker skipped the cancelled job
    assert svg_layers(result.svg, image_size(VASE))[0][1] == 4
    states = {j["job_id"]: j["state"] for j in client.jobs()}
    assert (states[long_id], states[queued_id], states[last_id]) == ("cancelled", "cancelled", "done")
    assert client.cancel(last_id) == "done"  # cancelling a finished job changes nothing
    assert isinstance(client.fetch(last_id), JobResult)


def test_a_client_killed_mid_job_does_not_cancel_it(engine, client, tmp_path):
    """The client process dies (SIGKILL) while its job runs: the job finishes and waits to be fetched."""
    script = tmp_path / "client.py"
    script.write_text(f"""
import json, sys
from bridge.client import EngineClient
from bridge.connection import ConnectionInfo
from bridge.params import ClipassoParams, SketchRequest, request_to_json
client = EngineClient(ConnectionInfo(**json.loads(sys.argv[1])))
params = ClipassoParams(strokes=(5,), seeds=(0,), iterations=60, eval_every=60, aug_bank=4)
job_id, _ = client.submit(*request_to_json(SketchRequest({str(ANIMAL)!r}, params)), name="orphan.png")
print(job_id, flush=True)
def on_message(msg):
    if msg.msg_type == "progress" and msg.content["stage"] == "optimise":
        print("progress", flush=True)
client.wait(job_id, on_message=on_message)
print("finished", flush=True)
""")
    proc = subprocess.Popen(
        [sys.executable, str(script), json.dumps(engine.info.__dict__)],
        cwd=ROOT,
        env=engine.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(JOB_S, proc.kill)  # bounds the reads below
    watchdog.start()
    try:
        job_id = proc.stdout.readline().strip()
        assert re.fullmatch(r"[0-9a-f]{32}", job_id), job_id
        assert proc.stdout.readline().strip() == "progress"
        proc.kill()
        proc.wait(30)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
    wait_for(
        lambda: {j["job_id"]: j["state"] for j in client.jobs()}[job_id] == "done", JOB_S, "the orphaned job to finish"
    )
    later = engine.client()  # a new client fetches it by id
    result = later.fetch(job_id)
    assert isinstance(result, JobResult) and result.name == "orphan.png"
    assert svg_layers(result.svg, image_size(ANIMAL)) == [("5 strokes", 5, True)]


# -- hostile and broken input ----------------------------------------------------------------------


def _resigned(frames: list[bytes], signature: bytes) -> list[bytes]:
    return [frames[0], signature, *frames[2:]]


def _valid_submit(raw: Raw, **overrides):
    job, buffers = sketch_job()
    job.update(overrides)
    return raw.signed(header("submit_request"), {"job": job, "name": "x.png"}, buffers)


BROKEN = {
    # case: (frames builder, expected code, words in the message)
    "bad-signature": (lambda r: _resigned(Raw.signed(r, header()), b"0" * 64), "bad_message", "signature"),
    "no-signature": (lambda r: _resigned(Raw.signed(r, header()), b""), "bad_message", "signature"),
    "other-key": (lambda r: next(Session("f" * 64).parts(Message("status_request"))), "bad_message", "signature"),
    "garbage-frame": (lambda r: [os.urandom(100)], "bad_message", "delimiter"),
    "garbage-frames": (lambda r: [os.urandom(n) for n in (3, 0, 50, 7)], "bad_message", "delimiter"),
    "empty-frame": (lambda r: [b""], "bad_message", "delimiter"),
    "missing-delimiter": (lambda r: Raw.signed(r, header())[1:], "bad_message", "delimiter"),
    "truncated": (lambda r: Raw.signed(r, header())[:4], "bad_message", "frames"),
    "delimiter-only": (lambda r: [DELIMITER], "bad_message", "frames"),
    "wrong-version": (lambda r: Raw.signed(r, header(version="0.1")), "bad_message", "version"),
    "no-version": (lambda r: Raw.signed(r, {"msg_id": "x", "msg_type": "status_request"}), "bad_message", "version"),
    "unknown-type": (lambda r: Raw.signed(r, header("frobnicate_request")), "bad_message", "unknown message type"),
    "reply-as-request": (lambda r: Raw.signed(r, header("status_reply")), "bad_message", "unknown message type"),
    "list-type": (lambda r: Raw.signed(r, header(msg_type=["status_request"])), "bad_message", "message type"),
    "nan-in-header": (
        lambda r: Raw.signed(r, json.dumps(header()).encode()[:-1] + b', "x": NaN}'),
        "bad_message",
        "JSON",
    ),
    "deep-json": (
        # 30,000 levels: far past any recursion limit, in one frame (a larger one would be dropped unread)
        lambda r: Raw.signed(r, header(), b'{"a": ' + b"[" * 30_000 + b"]" * 30_000 + b"}"),
        "bad_message",
        "JSON",
    ),
    "invalid-json": (lambda r: Raw.signed(r, header(), b'{"job": '), "bad_message", "JSON"),
    "not-utf8": (lambda r: Raw.signed(r, header(), b'{"a": "\xff\xfe"}'), "bad_message", "JSON"),
    "content-not-object": (lambda r: Raw.signed(r, header(), b"[1, 2]"), "bad_message", "objects"),
    "unknown-job-field": (lambda r: _valid_submit(r, priority=1), "bad_input", "unknown job field 'priority'"),
    "unknown-param": (
        lambda r: _valid_submit(r, params={"strokes": [4], "turbo": True}),
        "bad_input",
        "unknown parameter 'turbo'",
    ),
    "param-wrong-type": (lambda r: _valid_submit(r, params={"iterations": "5"}), "bad_input", "wrong type"),
    "param-out-of-range": (lambda r: _valid_submit(r, params={"strokes": [0]}), "bad_input", "stroke counts"),
    "params-not-object": (lambda r: _valid_submit(r, params=[4]), "bad_input", "JSON object"),
    "unknown-kind": (lambda r: _valid_submit(r, kind="video"), "bad_input", "unknown job kind"),
    "job-not-object": (
        lambda r: Raw.signed(r, header("submit_request"), {"job": "sketch"}, [b"x"]),
        "bad_input",
        "unknown job kind",
    ),
    "no-image": (
        lambda r: Raw.signed(r, header("submit_request"), {"job": sketch_job()[0], "name": "x.png"}),
        "bad_input",
        "no image",
    ),
    "image-dropped": (lambda r: _valid_submit(r)[:6], "bad_message", "signature"),  # buffers are signed too
    "mask-buffer-missing": (lambda r: _valid_submit(r, mask={"buffer": 5}), "bad_input", "mask"),
    "bad-colour": (lambda r: _valid_submit(r, color="red; evil"), "bad_input", "colour"),
    "bad-name": (
        lambda r: Raw.signed(r, header("submit_request"), {"job": sketch_job()[0], "name": ["x"]}, sketch_job()[1]),
        "bad_input",
        "name",
    ),
    "fetch-unknown-job": (
        lambda r: Raw.signed(r, header("fetch_request"), {"job_id": "0" * 32}),
        "unknown_job",
        "no job",
    ),
    "fetch-job-id-type": (
        lambda r: Raw.signed(r, header("fetch_request"), {"job_id": {"$ne": 1}}),
        "unknown_job",
        "no job",
    ),
    "cancel-unknown-job": (
        lambda r: Raw.signed(r, header("cancel_request"), {"job_id": "../../etc/passwd"}),
        "unknown_job",
        "no job",
    ),
    "cancel-no-job-id": (lambda r: Raw.signed(r, header("cancel_request")), "unknown_job", "no job"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_message_gets_an_error_reply_and_the_engine_serves_on(engine, client, case):
    build, code, words = BROKEN[case]
    raw = engine.raw()
    try:
        frames = build(raw)
        raw.send(frames)
        reply = raw.recv(timeout_s=20)
        assert reply is not None, "no reply"
        assert reply.msg_type == "error"
        assert reply.content["code"] == code, reply.content
        assert words in reply.content["message"], reply.content
        assert reply.content["hint"]
        if code not in ("bad_message", "too_large"):  # the request was readable: the reply names it
            assert reply.parent["msg_id"] == json.loads(frames[2])["msg_id"]
    finally:
        raw.close()
    assert engine.alive()
    assert client.status()["queue"] == []  # nothing was queued, and the engine still answers


# bridge/params.py (request_from_json / ClipassoParams.validate) vets every job the engine accepts.


def test_unhashable_job_kind_is_bad_input(engine, client):
    raw = engine.raw()
    try:
        raw.send(_valid_submit(raw, kind=["sketch"]))
        reply = raw.recv(timeout_s=20)
    finally:
        raw.close()
    assert client.status()["pid"] == engine.pid  # (this part holds: the engine serves on)
    assert reply.content["code"] == "bad_input", reply.content


def test_a_mask_path_is_refused_over_the_bridge(engine, client, tmp_path):
    from PIL import Image

    mask = tmp_path / "mask.png"
    Image.new("L", (8, 8), 255).save(mask)
    job, buffers = sketch_job(b"not an image")  # if it is accepted anyway, its job fails at once
    job["mask"] = str(mask)
    with pytest.raises(JobFailed) as refused:
        client.submit(job, buffers, name="x.png")
    assert refused.value.code == "bad_input"


@pytest.mark.parametrize(
    "params",
    [{"lr": 1e300}, {"aug_bank": 10**9}, {"num_aug": 10**8}, {"strokes": list(range(1, 1025))}, {"walk_step": -5.0}],
    ids=["lr", "aug-bank", "num-aug", "levels", "walk-step"],
)
def test_absurd_parameters_are_refused_at_submit(engine, client, params):
    job, buffers = sketch_job(b"not an image")  # if it is accepted anyway, its job fails at once
    job["params"].update(params)
    with pytest.raises(JobFailed) as refused:
        client.submit(job, buffers, name="x.png")
    assert refused.value.code == "bad_input"


@pytest.mark.parametrize(
    "payload, words",
    [
        (b"this is not an image at all", "image"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "image"),  # a PNG signature, then nothing sensible
        (None, "pixels"),  # the 30000 x 30000 bomb
    ],
    ids=["text", "corrupt-png", "image-bomb"],
)
def test_bad_image_fails_its_job_with_bad_input_and_the_engine_serves_on(engine, client, payload, words):
    payload = png_bomb() if payload is None else payload
    before = rss_kib(engine.pid)
    job_id, _ = client.submit(*sketch_job(payload), name="bad.png")
    with pytest.raises(JobFailed) as failed:
        client.wait(job_id, timeout_s=JOB_S)
    assert failed.value.code == "bad_input" and failed.value.job_id == job_id
    assert words in failed.value.message and failed.value.hint
    assert rss_kib(engine.pid) - before < 200 * 1024  # the bomb was not decoded (900 MP would be ~900 MiB+)
    job_id, _ = client.submit(*sketch_job(), name="good.png")
    assert svg_layers(client.wait(job_id, timeout_s=JOB_S).svg)[0][1] == 4


def test_oversized_messages_are_refused_and_the_engine_serves_on(small_engine):
    client = small_engine.client()
    raw = small_engine.raw()
    try:
        # over the limit in all: a readable error reply to the first chunk, which announces the size
        big = [os.urandom(300_000), os.urandom(300_000)]
        raw.send(next(raw.session.parts(Message("submit_request", {"job": sketch_job()[0], "name": "big.png"}, big))))
        reply = raw.recv(timeout_s=20)
        assert reply.msg_type == "error" and reply.content["code"] == "too_large"
        assert "limit of" in reply.content["message"] and "--max-message-mb" in reply.content["hint"]
        # our client knows the limit from the connection file and refuses before sending, also a
        # frame far beyond it, which the engine's socket would drop without a word
        for size in (700_000, 3 * 2**20):
            started = time.monotonic()
            with pytest.raises(ClientError) as refused:
                client.submit(sketch_job()[0], [b"\0" * size], name="big.png")
            assert refused.value.code == "too_large" and "limit of 0.5 MiB" in refused.value.message
            assert "--max-message-mb" in refused.value.hint and time.monotonic() - started < 1
        # a client that trusts a larger limit (an engine restarted with a smaller one) gets the
        # engine's refusal as an answer, not a timeout
        lenient = EngineClient(dataclasses.replace(small_engine.info, max_message_bytes=2**30))
        with lenient, pytest.raises(JobFailed) as failed:
            lenient.submit(sketch_job()[0], [b"\0" * 700_000], name="big.png")
        assert failed.value.code == "too_large" and "limit of 0.5 MiB" in failed.value.message
        # what a client that does not check gets for a frame over protocol.FRAME_BYTES: zmq drops that
        # connection on the frame's header; others are served
        raw.send([DELIMITER, b"sig", os.urandom(3 * 2**20)])
        assert raw.recv(timeout_s=2) is None
    finally:
        raw.close()
    assert small_engine.alive()
    assert client.status()["pid"] == small_engine.pid
    assert small_engine.client().status()["queue"] == []
    job_id, _ = client.submit(*sketch_job(VASE), name="fits.png")  # ~35 KB image: well within
    assert svg_layers(client.wait(job_id, timeout_s=JOB_S).svg)[0][1] == 4


# -- the fuzz run ----------------------------------------------------------------------------------

FUZZ_MESSAGES = 1200
FUZZ_SEED = 20240607
FIELD_NAMES = [
    "job",
    "name",
    "job_id",
    "watch",
    "kind",
    "params",
    "mask",
    "width",
    "color",
    "strokes",
    "seeds",
    "iterations",
    "buffer",
    "msg_id",
    "msg_type",
    "version",
    "aug_bank",
    "num_aug",
]
REQUEST_TYPES = sorted(protocol.REQUESTS - {"shutdown_request"})  # a valid shutdown would end the run


def _random_json(rng: random.Random, depth: int = 0):
    choice = rng.randrange(12 if depth < 4 else 8)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([True, False])
    if choice == 2:
        return rng.choice([0, -1, 1, 2**31, -(2**63), 10**30, 4, 100_000, 1024])
    if choice == 3:
        return rng.choice([0.0, -0.5, 1e308, -1e-308, 3.5, 1.5])
    if choice == 4:
        return rng.choice(
            [
                "",
                "sketch",
                "scene",
                "none",
                "auto",
                "#000000",
                "1.0",
                VERSION,
                "\u0000",
                "é" * 10,
                "x" * rng.randrange(1, 3000),
                "../../etc/passwd",
                "0" * 32,
                os.urandom(16).hex(),
            ]
        )
    if choice in (5, 6):
        return rng.choice([*REQUEST_TYPES, "status_reply", "result", "error"])
    if choice == 7:
        return os.urandom(rng.randrange(1, 40)).hex()
    if choice in (8, 9):
        return {rng.choice(FIELD_NAMES): _random_json(rng, depth + 1) for _ in range(rng.randrange(0, 6))}
    return [_random_json(rng, depth + 1) for _ in range(rng.randrange(0, 5))]


def _random_frames(rng: random.Random) -> list[bytes]:
    frames = [rng.randbytes(rng.choice([0, 1, 8, 64, 300, 2000])) for _ in range(rng.randrange(1, 9))]
    if rng.random() < 0.5:
        frames.insert(rng.randrange(len(frames) + 1), DELIMITER)
    return frames


def _base_messages(raw: Raw, job_ids: list[str]) -> list[list[bytes]]:
    job, _ = sketch_job()
    job_id = job_ids[0] if job_ids else "0" * 32
    return [
        raw.signed(header()),
        raw.signed(header("list_request")),
        raw.signed(header("fetch_request"), {"job_id": job_id, "watch": True}),
        raw.signed(header("cancel_request"), {"job_id": "1" * 32}),
        # a submit whose image is not one: if a mutation keeps it valid, its job fails at once
        raw.signed(header("submit_request"), {"job": job, "name": "fuzz.png"}, [b"not an image"]),
    ]


def _mutated(rng: random.Random, frames: list[bytes]) -> list[bytes]:
    frames = list(frames)
    for _ in range(rng.randrange(1, 4)):
        i = rng.randrange(len(frames))
        op = rng.randrange(8)
        if op == 0 and frames[i]:  # flip a byte
            b = bytearray(frames[i])
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
            frames[i] = bytes(b)
        elif op == 1:  # truncate a frame
            frames[i] = frames[i][: rng.randrange(len(frames[i]) + 1)]
        elif op == 2 and len(frames) > 1:  # drop a frame
            del frames[i]
        elif op == 3:  # duplicate a frame
            frames.insert(i, frames[i])
        elif op == 4:  # swap two frames
            j = rng.randrange(len(frames))
            frames[i], frames[j] = frames[j], frames[i]
        elif op == 5:  # insert a random frame
            frames.insert(i, rng.randbytes(rng.randrange(0, 100)))
        elif op == 6:  # empty a frame
            frames[i] = b""
        else:  # append garbage buffers (not signed: a valid message may stay valid)
            frames += [rng.randbytes(rng.randrange(0, 500)) for _ in range(rng.randrange(1, 3))]
    return frames


def _signed_broken(rng: random.Random, raw: Raw) -> list[bytes]:
    """Correctly signed, so every check past the signature gets exercised."""

    def part(kind: str) -> bytes:
        r = rng.random()
        if kind in ("parent", "metadata") and r < 0.8:
            return b"{}"
        if r < 0.1:
            return rng.randbytes(rng.randrange(0, 50))
        if r < 0.15:
            return b'{"a": NaN}' if rng.random() < 0.5 else b"[" * 5000
        if kind == "header" and r < 0.9:
            h = header(rng.choice(REQUEST_TYPES))
            for _ in range(rng.randrange(0, 3)):
                h[rng.choice(["version", "msg_type", "msg_id", "date", "extra"])] = _random_json(rng)
            return json.dumps(h).encode()
        if kind == "content" and r < 0.6:
            job, _ = sketch_job()
            content = {"job": job, "name": "fuzz.png", "job_id": rng.choice(["0" * 32, os.urandom(16).hex()])}
            target = content
            for _ in range(rng.randrange(1, 4)):  # break a field somewhere inside
                if isinstance(target.get("job"), dict) and rng.random() < 0.5:
                    target = target["job"]
                    if isinstance(target.get("params"), dict) and rng.random() < 0.5:
                        target = target["params"]
                target[rng.choice(list(target) + FIELD_NAMES)] = _random_json(rng)
            return json.dumps(content).encode()
        return json.dumps(_random_json(rng)).encode()

    parts = [part("header"), part("parent"), part("metadata"), part("content")]
    buffers = [rng.randbytes(rng.randrange(0, 200)) for _ in range(rng.randrange(0, 3))]
    return [DELIMITER, raw.session.sign([*parts, *buffers]), *parts, *buffers]


def _tracebacks(log: str) -> list[str]:
    """The tracebacks in an engine log: each one a handler that failed on input it should have refused."""
    return [
        "Traceback (most recent call last):" + block for block in log.split("Traceback (most recent call last):")[1:]
    ]


def test_fuzz_never_crashes_the_engine(small_engine):
    """1,200 malformed messages (fixed seed): the engine answers each with an error (or drops it),
    never needs its last-resort handler, keeps answering status, and its memory stays put."""
    rng = random.Random(FUZZ_SEED)
    client = small_engine.client()
    job_id, _ = client.submit(*sketch_job(VASE), name="seed.png")
    client.wait(job_id, timeout_s=JOB_S)
    rss_before = rss_kib(small_engine.pid)
    log_before = len(small_engine.log_text())
    raw = small_engine.raw()
    codes: dict[str, int] = {}
    kinds: dict[str, int] = {}
    unanswered = 0
    try:
        bases = _base_messages(raw, [job_id])
        for i in range(FUZZ_MESSAGES):
            r = rng.random()
            if r < 0.3:
                frames = _random_frames(rng)
            elif r < 0.6:
                frames = _mutated(rng, rng.choice(bases))
            elif r < 0.98:
                frames = _signed_broken(rng, raw)
            else:  # over the 0.5 MiB limit: the first chunk announces it
                frames = next(raw.session.parts(Message("submit_request", {}, [rng.randbytes(400_000)] * 2)))
            raw.send(frames)
            reply = raw.recv(timeout_s=10)
            if reply is None:
                unanswered += 1
            else:
                kinds[reply.msg_type] = kinds.get(reply.msg_type, 0) + 1
                if reply.msg_type == "error":
                    codes[reply.content["code"]] = codes.get(reply.content["code"], 0) + 1
            while raw.socket.poll(0):  # job messages of anything a mutation left valid
                raw.socket.recv_multipart()
            if i % 100 == 0:
                assert small_engine.alive(), f"the engine died at message {i}"
    finally:
        raw.close()
    assert small_engine.alive()
    status = client.status()
    assert status["pid"] == small_engine.pid
    failed = _tracebacks(small_engine.log_text()[log_before:])
    assert not failed, "a handler failed on input it should have refused:\n" + "\n\n".join(failed[:3])
    assert "dropped it" not in small_engine.log_text()[log_before:]  # the last-resort handler was never needed
    summary = f"replies {kinds}, error codes {codes}, unanswered {unanswered}"
    print(summary)  # shown with -s: what the run exercised
    assert unanswered <= FUZZ_MESSAGES // 100, summary  # zmq-level drops only
    assert codes.get("bad_message", 0) > FUZZ_MESSAGES // 2, summary
    assert set(codes) <= {"bad_message", "too_large", "bad_input", "unknown_job", "cancelled"}, summary
    for job in client.jobs():  # anything a mutation queued is over (or cancelled now)
        if job["state"] in ("queued", "running"):
            client.cancel(job["job_id"])
    wait_idle(client)
    rss_growth = rss_kib(small_engine.pid) - rss_before
    assert rss_growth < 100 * 1024, f"RSS grew by {rss_growth} KiB; {summary}"
    # and it still does real work
    job_id, _ = client.submit(*sketch_job(VASE), name="after.png")
    assert svg_layers(client.wait(job_id, timeout_s=JOB_S).svg)[0][1] == 4


# -- the connection file and the network -----------------------------------------------------------


def test_connection_file_is_private_and_the_engine_listens_on_loopback_only(engine):
    path = engine.run_dir / connection.CONNECTION_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    assert engine.run_dir.stat().st_mode & 0o777 == 0o700
    info = json.loads(path.read_text())
    assert set(info) == {"transport", "ip", "port", "key", "pid", "version", "max_message_bytes"}
    assert info["ip"] == "127.0.0.1" and info["transport"] == "tcp" and info["pid"] == engine.pid
    assert info["version"] == VERSION and re.fullmatch(r"[0-9a-f]{64}", info["key"])
    assert sorted(p.name for p in engine.run_dir.iterdir()) == ["engine.json", "engine.lock"]  # no temp files
    if not Path("/proc/net/tcp").exists():
        pytest.skip("no /proc/net/tcp")
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port = local.rsplit(":", 1)
            if int(port, 16) == info["port"] and state == "0A":  # LISTEN
                listening.append(address)
    assert listening == ["0100007F"]  # 127.0.0.1, and nowhere else (not 0.0.0.0, not IPv6)


NOBODY = 65534  # a user id that owns nothing here


def as_another_user(*command: str) -> subprocess.CompletedProcess:
    """Run `command` as user NOBODY (the test must run as root to switch)."""
    return subprocess.run(
        command,
        preexec_fn=lambda: (os.setgid(NOBODY), os.setuid(NOBODY)),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_results_and_records_are_readable_by_their_owner_only(tmp_path):
    """The data folder sits where other users may look (a 0755 home, or one an older version made
    0755): the engine makes it and its results 0700, every record and SVG 0600."""
    base = Path(tempfile.mkdtemp(prefix="sketchabs-privacy-"))  # outside pytest's private tmp folder
    try:
        base.chmod(0o755)
        env = engine_env(tmp_path)
        data = base / "data"
        (data / "results").mkdir(parents=True)
        for folder in (data, data / "results"):
            folder.chmod(0o755)
        env["SKETCH_ABSTRACTION_DATA_DIR"] = str(data)
        eng = Engine(tmp_path, env).start()
        try:
            client = eng.client()
            job_id, _ = client.submit(*sketch_job(), name="holiday-with-anna.png")
            client.wait(job_id, timeout_s=JOB_S)
        finally:
            eng.stop()
        results = data / "results"
        assert {p.name for p in results.iterdir()} == {f"{job_id}.json", f"{job_id}.svg"}
        assert [oct(f.stat().st_mode & 0o777) for f in (data, results)] == ["0o700", "0o700"]
        assert {oct(f.stat().st_mode & 0o777) for f in results.iterdir()} == {"0o600"}
        if os.getuid() == 0:  # and another user, really trying, reads neither the sketch nor the photo's name
            assert as_another_user("ls", str(base)).returncode == 0  # (the test's premise: others look here)
            for path in results.iterdir():
                tried = as_another_user("cat", str(path))
                assert tried.returncode != 0 and "Permission denied" in tried.stderr, tried
            listing = as_another_user("ls", str(results))
            assert listing.returncode != 0 and "Permission denied" in listing.stderr
    finally:
        shutil.rmtree(base)


def test_a_result_the_disk_cannot_hold_fails_its_job_at_once(tmp_path):
    """The data folder on a full 64 KiB file system: a job whose SVG does not fit fails at once with
    the reason; nothing says "done" without its file; a result that fits is stored as ever."""
    env = engine_env(tmp_path)
    data = Path(env["SKETCH_ABSTRACTION_DATA_DIR"])
    eng = Engine(tmp_path, env).start(prefix=with_private_mounts(f"mount -t tmpfs -o size=64k tmpfs '{data}'"))
    try:
        client = eng.client()
        big = tiny_params(strokes=(1024, 1000), iterations=1, eval_every=1)  # an SVG of ~150 KB
        job_id, _ = client.submit(*sketch_job(params=big), name="big.png")
        started = time.monotonic()
        with pytest.raises(JobFailed) as failed:
            client.wait(job_id, timeout_s=JOB_S)
        assert time.monotonic() - started < JOB_S / 2, "the client was told at once"
        assert failed.value.code == "storage_error" and "No space left on device" in failed.value.message
        assert "free some disk space" in failed.value.hint
        assert {j["job_id"]: j["state"] for j in client.jobs()}[job_id] == "error"
        with pytest.raises(JobFailed) as fetched:
            client.fetch(job_id)
        assert fetched.value.code == "storage_error"
        small_id, _ = client.submit(*sketch_job(), name="small.png")
        assert svg_layers(client.wait(small_id, timeout_s=JOB_S).svg)[0][1] == 4
        assert "dropped it" not in eng.log_text() and "Traceback" not in eng.log_text()
    finally:
        eng.stop()


def test_temp_files_of_killed_writes_are_pruned(fresh):
    """A SIGKILL during a result write leaves write_atomic's temp file; the next start removes it."""
    first = fresh().start()
    client = first.client()
    job_id, _ = client.submit(*sketch_job(), name="kept.png")
    client.wait(job_id, timeout_s=JOB_S)
    first.kill()
    results = first.data_dir / "results"
    left = [results / f".{job_id}.svg.k1ll3d.tmp", results / f".{'f' * 32}.json.x2y3z4.tmp"]
    for path in left:
        path.write_bytes(b"<svg half-written")
    second = fresh().start()
    assert not [p for p in left if p.exists()]
    assert isinstance(second.client().fetch(job_id), JobResult)  # the finished result stays


def test_a_wrong_key_gets_no_service(engine, client):
    info = replace(engine.info, key="0" * 64)
    with EngineClient(info, timeout_s=1.5) as stranger, pytest.raises(EngineUnavailable):
        stranger.status()  # the engine's error reply is signed with the real key, so it is not read
    assert client.status()["pid"] == engine.pid


def test_a_peer_without_the_key_makes_the_engine_hold_nothing(fresh):
    """Strangers (no handshake, or a wrong password) each send five 48 MB messages of many frames
    under the per-frame limit: refused at the handshake, the engine never buffers them."""
    eng = fresh().start("--max-message-mb", "1")
    client = eng.client()
    client.status()
    peak, resident = rss_kib(eng.pid, "VmHWM"), rss_kib(eng.pid)
    frame = os.urandom(900_000)  # under the engine's per-frame limit (2 x 1 MiB)
    strangers = [Raw(eng.info, password=b"guessed"), Raw(eng.info, password=b"0" * 64), Raw(eng.info, handshake=False)]
    try:
        for stranger in strangers:
            stranger.socket.setsockopt(zmq.SNDTIMEO, 2000)  # once refused, a DEALER has no one to send to
            for _ in range(5):
                with contextlib.suppress(zmq.Again):
                    stranger.socket.send_multipart([DELIMITER, b"sig", *[frame] * 53], copy=False)
        time.sleep(3)  # time for zmq to deliver whatever it would
        assert all(stranger.recv(timeout_s=0.5) is None for stranger in strangers)
    finally:
        for stranger in strangers:
            stranger.close()
    assert client.status()["pid"] == eng.pid
    assert rss_kib(eng.pid, "VmHWM") - peak < 30 * 1024, "the engine held a stranger's message"
    assert rss_kib(eng.pid) - resident < 30 * 1024


def test_a_captured_request_replayed_later_is_refused(engine, client):
    raw = engine.raw()
    try:
        submit = raw.signed(header("submit_request"), {"job": sketch_job()[0], "name": "once.png"}, sketch_job()[1])
        raw.send(submit)
        first = raw.reply()
        assert first.msg_type == "submit_reply"
        raw.send(submit)  # the same frames again, as someone who recorded them would send them
        again = raw.reply()
        assert again.msg_type == "error" and "replay" in again.content["message"]
        stale = raw.signed(header("status_request", date=protocol.timestamp(time.time() - 3600)))
        raw.send(stale)
        assert "too old" in raw.reply().content["message"]
    finally:
        raw.close()
    client.wait(first.content["job_id"], timeout_s=JOB_S)
    assert [j["name"] for j in client.jobs()].count("once.png") == 1  # queued once, not twice


def test_the_queue_is_capped_and_cancelled_jobs_give_their_memory_back(fresh):
    eng = fresh().start("--max-message-mb", "100")  # queued images: at most 200 MiB
    client = eng.client()
    running, _ = client.submit(*sketch_job(params=long_params()), name="long.png")
    wait_running(client, running)
    small = [client.submit(*sketch_job(b"x"), name=f"s{i}.png")[0] for i in range(100)]
    with pytest.raises(JobFailed) as full:
        client.submit(*sketch_job(b"x"), name="one-too-many.png")
    assert full.value.code == "queue_full" and "100 jobs" in full.value.message
    for job_id in small:
        client.cancel(job_id)
    time.sleep(3)  # the running job's own memory settles
    before = sorted(rss_kib(eng.pid) for _ in range(5) if not time.sleep(0.2))[2]
    queued, refusal = [], None
    for i in range(100):  # 4 MB images (garbage: a queued job's image is decoded when it runs)
        try:
            queued.append(client.submit(*sketch_job(os.urandom(4_000_000)), name=f"q{i}.png")[0])
        except JobFailed as err:
            refusal = err
            break
    assert len(queued) == 2 * 100 * 2**20 // 4_000_000 and refusal.code == "queue_full"
    assert "queue is full" in refusal.message and "cancel" in refusal.hint
    assert rss_kib(eng.pid) - before > 100 * 1024  # (the test's premise: the queue held them)
    for job_id in queued:
        assert client.cancel(job_id) == "cancelled"
    wait_for(lambda: rss_kib(eng.pid) - before < 40 * 1024, 10, "the cancelled jobs' memory to be given back")
    assert client.status()["running"] == running and client.cancel(running) == "cancelling"


HUGE = SceneParams(layers=tuple(range(12)), strokes=256, seeds=tuple(1000 * i for i in range(16)), iterations=1)
"""12 fidelity layers x 16 seeds of 256 strokes, every value within its documented limits: 192 scene
sketches optimised together, each with its MLPs and their optimiser state (~12 GiB). A scene, since
CLIPasso now runs CLIP a pass of a few sketches at a time on a CPU, so that even 256 object sketches
fit (engine.budget.sketches_per_pass)."""


def test_a_job_that_cannot_fit_is_refused_before_it_allocates(tmp_path):
    """Under an 8 GiB address-space cap: refused at once with the estimate and the fix; the engine
    serves on. (Once this ran until the kernel killed the engine.)"""
    eng = Engine(tmp_path).start(memory_limit=8 * 2**30)
    try:
        client = eng.client()
        job_id, _ = client.submit(*request_to_json(SceneRequest(FIELD, HUGE, mask="none")), name="huge.png")
        started = time.monotonic()
        with pytest.raises(JobFailed) as refused:
            client.wait(job_id, timeout_s=JOB_S)
        assert refused.value.code == "device_error", refused.value.message
        assert "192 sketches: 1 part x 12 layers x 16 seeds" in refused.value.message, refused.value.message
        assert "GiB of memory on cpu" in refused.value.message and "is free" in refused.value.message
        assert "fewer seeds or layers" in refused.value.hint, refused.value.hint
        assert time.monotonic() - started < 60
        small_id, _ = client.submit(*sketch_job(), name="small.png")
        assert svg_layers(client.wait(small_id, timeout_s=JOB_S).svg)[0][1] == 4
    finally:
        eng.stop()


def test_running_out_of_memory_anyway_gets_the_memory_hint():
    """What the CPU allocator raises when memory runs out is recognised: the job fails with the
    device_error code and the hint, not as an internal error (a bug)."""
    import torch

    from engine.budget import OUT_OF_MEMORY_HINT, is_out_of_memory
    from engine.service.worker import unexpected

    with pytest.raises(RuntimeError) as failed:
        torch.empty(2**50, dtype=torch.uint8)  # 1 PiB: more than any address space
    assert is_out_of_memory(failed.value) and is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    reply = unexpected(failed.value, "f" * 32)
    assert reply["code"] == "device_error" and reply["hint"] == OUT_OF_MEMORY_HINT


# -- lifecycle: restart, stale file, auto-start, start failures, idle timeout --------------------------


def test_results_survive_restarts_and_running_jobs_become_interrupted(fresh, monkeypatch):
    use_env(monkeypatch, fresh.env)
    first = fresh().start()
    client = first.client()
    done_id, _ = client.submit(*sketch_job(VASE), name="kept.png")
    kept = client.wait(done_id, timeout_s=JOB_S).svg
    killed_id, _ = client.submit(*sketch_job(params=long_params()), name="killed.png")
    wait_running(client, killed_id)
    first.kill()  # SIGKILL: no chance to clean up; the connection file stays behind, stale
    dead_pid = first.pid
    assert json.loads((first.run_dir / connection.CONNECTION_FILE).read_text())["pid"] == dead_pid

    with pytest.raises(EngineUnavailable) as unavailable:  # the stale file is not taken for an engine
        EngineClient.connect()
    assert unavailable.value.code == "not_running"

    # a client starts a fresh engine (detached), which replaces the stale file
    started = EngineClient.connect(start=engine_command(sys.executable, "tiny-random", "cpu", idle_timeout_s=300))
    try:
        second_pid = started.status()["pid"]
        assert second_pid != dead_pid and connection.pid_alive(second_pid)
        assert json.loads((first.run_dir / connection.CONNECTION_FILE).read_text())["pid"] == second_pid
        assert os.getsid(second_pid) == second_pid  # its own session: it outlives the client
        assert isinstance(r := started.fetch(done_id), JobResult) and r.svg == kept
        with pytest.raises(JobFailed) as interrupted:
            started.fetch(killed_id)
        assert interrupted.value.code == "interrupted" and "submit" in interrupted.value.hint
        states = {j["job_id"]: j["state"] for j in started.jobs()}
        assert states == {done_id: "done", killed_id: "interrupted"}

        # an orderly stop interrupts the running job and says so
        stopped_id, _ = started.submit(*sketch_job(params=long_params()), name="stopped.png")
        wait_running(started, stopped_id)
        assert started.shutdown() == [stopped_id]
    finally:
        started.close()
    wait_for(lambda: pid_gone(second_pid), 60, "the second engine to exit")
    assert not (first.run_dir / connection.CONNECTION_FILE).exists()  # removed on an orderly stop

    # results past their keeping time are deleted when an engine starts (not only after an hour up)
    results = first.data_dir / "results"
    old = {
        "job_id": "e" * 32,
        "name": "old.png",
        "kind": "sketch",
        "state": "done",
        "created": time.time() - 4e6,
        "finished": time.time() - 4e6,
        "fetched": time.time() - 2 * 86_400,
        "seconds": 1.0,
        "notes": [],
        "error": None,
    }
    (results / f"{'e' * 32}.json").write_text(json.dumps(old))
    (results / f"{'e' * 32}.svg").write_bytes(kept)

    third = fresh().start("--keep-hours", "24")
    client = third.client()
    assert not (results / f"{'e' * 32}.json").exists() and not (results / f"{'e' * 32}.svg").exists()
    with pytest.raises(JobFailed) as gone:
        client.fetch("e" * 32)
    assert gone.value.code == "unknown_job"
    assert client.fetch(done_id).svg == kept  # fetched an hour ago at most: kept
    with pytest.raises(JobFailed) as interrupted:
        client.fetch(stopped_id)
    assert interrupted.value.code == "interrupted"
    assert {j["job_id"]: j["state"] for j in client.jobs()}[stopped_id] == "interrupted"


def test_start_failure_nonexistent_python(fresh, monkeypatch):
    use_env(monkeypatch, fresh.env)
    with pytest.raises(EngineUnavailable) as failed:
        EngineClient.connect(start=["/nonexistent/python3", "-m", "engine", "serve"], ready_timeout_s=30)
    assert failed.value.code == "start_failed"
    assert "/nonexistent/python3" in failed.value.message and "No such file" in failed.value.message
    assert "install.py" in failed.value.hint


def test_start_failure_reports_the_engines_own_error(fresh, monkeypatch, tmp_path):
    use_env(monkeypatch, fresh.env)
    started = time.monotonic()
    with pytest.raises(EngineUnavailable) as failed:
        EngineClient.connect(
            start=engine_command(sys.executable, "openai", "cpu", weights_dir=str(tmp_path / "no-such-folder")),
            ready_timeout_s=120,
        )
    assert failed.value.code == "start_failed"
    assert failed.value.message.startswith("the engine exited while starting: weights folder ")
    assert "no-such-folder" in failed.value.message and "RN101.pt" in failed.value.hint
    assert time.monotonic() - started < 100  # noticed the exit; did not sit out the ready timeout


@pytest.mark.skipif(sys.platform == "win32", reason="holds the engine's lock with fcntl")
def test_a_client_waits_for_the_engine_another_start_is_loading(fresh, monkeypatch):
    """Two starts at once: the second engine is refused at its lock (before loading any model) while
    the first still loads. The client that started the refused one waits for the first instead of failing."""
    import fcntl

    use_env(monkeypatch, fresh.env)
    loading = open(fresh.env["SKETCH_ABSTRACTION_RUNTIME_DIR"] + "/" + connection.LOCK_FILE, "a+")  # noqa: SIM115
    fcntl.flock(loading.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # held as a loading engine holds it
    outcome: dict = {}

    def start() -> None:
        try:
            with EngineClient.connect(
                start=engine_command(sys.executable, "tiny-random", "cpu", idle_timeout_s=120), ready_timeout_s=120
            ) as client:
                outcome["pid"] = client.status()["pid"]
        except Exception as err:  # asserted below
            outcome["error"] = err

    waiting = threading.Thread(target=start)
    waiting.start()
    log = Path(fresh.env["SKETCH_ABSTRACTION_RUNTIME_DIR"]) / connection.LOG_FILE
    wait_for(lambda: log.exists() and "an engine is already running" in log.read_text(), 60, "the refusal")
    time.sleep(0.5)
    assert waiting.is_alive(), outcome  # its engine was refused; it waits on
    loading.close()
    first = fresh().start()  # the engine that was loading becomes ready
    waiting.join(120)
    assert outcome == {"pid": first.pid}


def test_start_timeout_is_bounded(fresh, monkeypatch):
    use_env(monkeypatch, fresh.env)
    started = time.monotonic()
    with pytest.raises(EngineUnavailable) as failed:  # a "python" that never becomes an engine
        EngineClient.connect(start=[sys.executable, "-c", "import time; time.sleep(4)"], ready_timeout_s=1.5)
    assert failed.value.code == "start_timeout" and "did not become ready" in failed.value.message
    assert time.monotonic() - started < 10


def test_not_running_without_start(fresh, monkeypatch):
    use_env(monkeypatch, fresh.env)
    with pytest.raises(EngineUnavailable) as failed:
        EngineClient.connect()
    assert failed.value.code == "not_running" and "sketch-abstraction serve" in failed.value.hint


def test_idle_timeout_counts_from_the_last_job_and_then_exits(fresh):
    eng = fresh().start("--idle-timeout", "2")
    client = eng.client()
    job_id, _ = client.submit(*sketch_job(params=tiny_params(iterations=60, eval_every=60)), name="slow.png")
    result = client.wait(job_id, timeout_s=JOB_S)  # sends nothing while the job runs (> 2 s)
    assert result.seconds > 2, "the job was too quick to tell"
    assert client.status()["pid"] == eng.pid  # a job is activity: the engine did not quit as it ended
    eng.proc.wait(timeout=60)
    assert eng.proc.returncode == 0
    assert "idle for" in eng.log_text()
    assert not (eng.run_dir / connection.CONNECTION_FILE).exists()
