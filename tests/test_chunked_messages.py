"""Large messages both ways through the real engine process (protocol 4.0): a photo of megabytes
goes up as chunks, and a preview larger than a frame comes back as chunks, put together by the
client. The pieces on their own: tests/test_bridge_protocol.py and tests/test_reassembly.py."""

from __future__ import annotations

import io
import random
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from bridge import protocol
from tests.harness.engine import JOB_S, Engine, sketch_job, svg_layers, tiny_params

pytestmark = pytest.mark.slow  # the real engine process


def noisy_png(path, side: int = 1200) -> int:
    """A photo that compresses badly (random pixels, a darker disc as its subject): megabytes."""
    rng = random.Random(7)
    picture = Image.frombytes("RGB", (side, side), rng.randbytes(3 * side * side))
    disc = Image.new("L", (side, side), 0)
    disc.paste(255, (side // 4, side // 4, 3 * side // 4, 3 * side // 4))
    picture.paste((20, 20, 20), mask=disc.point(lambda v: v // 2))
    picture.save(path)
    return path.stat().st_size


def test_a_photo_of_megabytes_goes_up_in_chunks_and_large_previews_come_back_whole(tmp_path):
    photo = tmp_path / "noise.png"
    size = noisy_png(photo)
    assert size > 40 * protocol.FRAME_BYTES  # dozens of chunks
    eng = Engine(tmp_path / "engine").start()
    try:
        client = eng.client(timeout_s=60)
        params = tiny_params(strokes=(6,), iterations=12, eval_every=1)
        job_id, position = client.submit(*sketch_job(photo, params), name="noise.png", preview_every=0.5)
        assert position == 0
        pictures: list[bytes] = []
        result = client.wait(job_id, on_message=lambda msg: pictures.extend(msg.buffers), timeout_s=JOB_S)
        assert svg_layers(result.svg)[0][1] == 6
        assert pictures, "no preview came back"
        large = [p for p in pictures if len(p) > protocol.FRAME_BYTES]
        assert large, f"every preview fit in one frame ({max(map(len, pictures))} bytes): no chunked reply was tested"
        with Image.open(io.BytesIO(large[-1])) as preview:
            preview.load()  # whole: a missing or reordered chunk would not decode
            assert max(preview.size) == 256
        assert client.status()["queue"] == []
    finally:
        eng.stop()


def test_two_photos_of_20_mb_go_up_at_once_and_the_watchdog_lets_them(tmp_path):
    """Two designers upload a 20 MB photo at the same moment: while the engine's main thread puts
    one together, the other's chunks wait in its ZeroMQ, at most RCVHWM parts of them, so libzmq
    holds less of either connection than the watchdog's bound (engine.service.watchdog): both
    submits are accepted, and no connection is ended."""
    photo = tmp_path / "noise.png"
    size = noisy_png(photo, side=2600)
    assert size > 20 * 10**6
    eng = Engine(tmp_path / "engine").start()
    try:
        clients = [eng.client(timeout_s=120) for _ in range(2)]
        params = tiny_params(strokes=(4,), iterations=1)
        with ThreadPoolExecutor(2) as pool:
            submits = list(pool.map(lambda c: c.submit(*sketch_job(photo, params), name="noise.png"), clients))
        assert len({job_id for job_id, _ in submits}) == 2
        assert "made ZeroMQ hold" not in eng.log_text()
        for client, (job_id, _) in zip(clients, submits, strict=True):
            assert svg_layers(client.wait(job_id, timeout_s=JOB_S).svg)[0][1] == 4
    finally:
        eng.stop()
