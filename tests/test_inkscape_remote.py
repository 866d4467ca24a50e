"""The Inkscape extension's Run tab choice "a shared engine": its scripts, under Inkscape's Python,
against a real engine serving 127.0.0.1:PORT with CURVE, while no engine runs on "this computer"."""

from __future__ import annotations

import json
import time

import pytest
import zmq

from tests.test_bridge_engine import Engine, engine_env
from tests.test_inkscape_ext import FAST, embedded_svg, ink_1_2, levels, pytestmark, run_script, setup, sketch_layers  # noqa: F401 (fixtures, skip marker)
from tests.test_remote_engine import cli, free_port


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A remote engine and the designer's connection file for it."""
    base = tmp_path_factory.mktemp("shared")
    env = engine_env(base)
    port = free_port()
    cli(env, "keys", "new", "designer")
    cli(env, "keys", "export", "designer", "--address", f"127.0.0.1:{port}", "-o", str(base / "designer.json"))
    eng = Engine(base, env).start("--listen", f"127.0.0.1:{port}")
    eng.file = base / "designer.json"
    yield eng
    eng.stop()


def no_local_engine(ink) -> bool:
    run = ink["base"] / "run"
    return not (run / "engine.json").exists()


def test_run_tab_remote_sketches_on_the_shared_engine(ink_1_2, shared, tmp_path):  # noqa: F811
    doc = embedded_svg(tmp_path / "doc.svg", [{"id": "img1"}])
    out = run_script(ink_1_2, "sketch_object.py", doc, "--id=img1", *FAST, "--engine=remote", f"--remote={shared.file}")
    assert out.returncode == 0, out.stderr.decode()
    assert levels(sketch_layers(out.stdout)[1][0]) == [("6 strokes", 6, False), ("3 strokes", 3, True)]
    assert no_local_engine(ink_1_2), "the remote choice started an engine on this computer"
    records = [json.loads(p.read_text()) for p in (shared.data_dir / "results").glob("*.json")]
    assert any(r["state"] == "done" for r in records), "the shared engine did not run the job"


def test_run_tab_remote_submit_and_return_then_insert_from_the_same_engine(ink_1_2, shared, tmp_path):  # noqa: F811
    doc = embedded_svg(tmp_path / "doc.svg", [{"id": "img2"}])
    remote = ("--engine=remote", f"--remote={shared.file}")
    out = run_script(ink_1_2, "sketch_object.py", doc, "--id=img2", *FAST[:-1], *remote, "--detach=true")
    assert "Insert Finished Sketches" in out.stderr.decode()
    deadline = time.monotonic() + 120
    while (out := run_script(ink_1_2, "sketch_insert.py", doc)).returncode != 0 and time.monotonic() < deadline:
        assert "Not finished yet" in out.stderr.decode(), out.stderr.decode()
        time.sleep(0.5)
    assert out.returncode == 0, out.stderr.decode()
    assert levels(sketch_layers(out.stdout)[1][0]) == [("6 strokes", 6, False), ("3 strokes", 3, True)]
    assert no_local_engine(ink_1_2)


def test_run_tab_remote_without_a_file_or_with_a_refused_key_says_what_to_do(ink_1_2, shared, tmp_path):  # noqa: F811
    doc = embedded_svg(tmp_path / "doc.svg", [{"id": "img3"}])
    out = run_script(ink_1_2, "sketch_object.py", doc, "--id=img3", *FAST, "--engine=remote")
    assert out.returncode != 0 and "names no connection file" in out.stderr.decode()
    stranger = tmp_path / "stranger.json"
    data = json.loads(shared.file.read_text())
    data["public_key"], data["secret_key"] = (key.decode() for key in zmq.curve_keypair())  # never allowed
    stranger.write_text(json.dumps(data))
    stranger.chmod(0o600)
    out = run_script(ink_1_2, "sketch_object.py", doc, "--id=img3", *FAST, "--engine=remote", f"--remote={stranger}")
    assert out.returncode != 0 and "refused this connection file's key" in out.stderr.decode(), out.stderr.decode()
    assert doc.read_text().count("<image") == 1 and no_local_engine(ink_1_2)
