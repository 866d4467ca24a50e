"""Large messages both ways through the real engine process (protocol 4.0): a photo of megabytes
goes up as chunks, and a preview larger than a frame comes back as chunks, put together by the
client. The pieces on their own: tests/test_bridge_protocol.py and tests/test_reassembly.py."""

from __future__ import annotations

import io
import random

import pytest
from PIL import Image

from bridge import protocol
from tests.test_bridge_engine import JOB_S, Engine, sketch_job, svg_layers, tiny_params

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
