"""The Inkscape extension's Run tab choice "a shared engine": its scripts, under Inkscape's Python,
against a real engine serving 127.0.0.1:PORT with CURVE, while no engine runs on "this computer"."""

from __future__ import annotations

import json
import time

import pytest
import zmq
from lxml import etree

from bridge.client import EngineClient
from tests.harness.engine import Engine, cli, engine_env, free_port
from tests.harness.inkscape import (
    FAST,
    MARKS,
    SVG_NS,
    embedded_svg,
    install_for_tests,
    levels,
    run_script,
    sketch_layers,
    stop_engine,
)
from tests.test_inkscape_refine import IMPORTANCE, sketch_doc

pytestmark = MARKS


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """An installation of this module's own, not the session's: its tests check that choosing the
    shared engine starts no engine on this computer, so none may have run in it before."""
    installed = install_for_tests(tmp_path_factory.mktemp("ink"))
    yield installed
    stop_engine(installed["env"])


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


def test_run_tab_remote_sketches_on_the_shared_engine(ink_1_2, shared, tmp_path):
    doc = embedded_svg(tmp_path / "doc.svg", [{"id": "img1"}])
    out = run_script(ink_1_2, "sketch_object.py", doc, "--id=img1", *FAST, "--engine=remote", f"--remote={shared.file}")
    assert out.returncode == 0, out.stderr.decode()
    assert levels(sketch_layers(out.stdout)[1][0]) == [("6 strokes", 6, False), ("3 strokes", 3, True)]
    assert no_local_engine(ink_1_2), "the remote choice started an engine on this computer"
    records = [json.loads(p.read_text()) for p in (shared.data_dir / "results").glob("*.json")]
    assert any(r["state"] == "done" for r in records), "the shared engine did not run the job"


def test_run_tab_remote_submit_and_return_then_insert_from_the_same_engine(ink_1_2, shared, tmp_path):
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


def test_run_tab_remote_without_a_file_or_with_a_refused_key_says_what_to_do(ink_1_2, shared, tmp_path):
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


def test_refine_sketch_on_a_shared_engine_lands_in_place_and_a_given_up_wait_comes_in_later(ink_1_2, shared, tmp_path):
    """The Run tab's shared engine: the refine runs there (a CURVE engine on 127.0.0.1) and lands in
    place; a wait given up is remembered as a refine job of that engine, which Insert Finished
    Sketches fetches from it and links as a refine of the photo (not as its object sketch)."""
    remote = ("--engine=remote", f"--remote={shared.file}")
    doc, layer_id, ids, locked = sketch_doc(tmp_path, ink_1_2, *remote)
    refine = ("--id=img1", f"--id={ids[0]}", "--iterations=11", "--window=false", *remote)
    out = run_script(ink_1_2, "sketch_refine.py", doc, *refine)
    assert out.returncode == 0 and out.stderr == b"", out.stderr.decode()
    root = etree.fromstring(out.stdout)
    paths = root.xpath(f"//svg:g[@id='{layer_id}']/svg:path", namespaces=SVG_NS)
    assert [p.get("id") for p in paths] == ids and etree.tostring(paths[1]) == locked
    assert all(p.get(IMPORTANCE) for p in paths[:1] + paths[2:]), "refined by the engine, written in place"
    records = [json.loads(p.read_text()) for p in (shared.data_dir / "results").glob("*.json")]
    [done] = [r["job_id"] for r in records if r.get("kind") == "refine" and r["state"] == "done"]

    out = run_script(ink_1_2, "sketch_refine.py", doc, *refine, "--timeout=0.0001")  # gives up at once
    assert out.returncode != 0 and "Insert Finished Sketches" in out.stderr.decode(), out.stderr.decode()
    [record] = (ink_1_2["base"] / "data" / "inkscape-pending").glob("*.json")
    pending = json.loads(record.read_text())
    assert (pending["kind"], pending["remote"]) == ("refine", str(shared.file))
    with EngineClient.connect(remote=shared.file) as client:  # no second optimisation: cancel it, and let
        client.cancel(pending["job_id"])  # the record name the first run's finished job (same kind, engine)
    record.unlink()
    (record.parent / f"{done}.json").write_text(json.dumps({**pending, "job_id": done}))
    out = run_script(ink_1_2, "sketch_insert.py", doc)
    assert out.returncode == 0, out.stderr.decode()
    inserted = etree.fromstring(out.stdout).xpath("//svg:g[@data-sketch-kind='refine']", namespaces=SVG_NS)
    assert len(inserted) == 1 and inserted[0].get("data-sketch-photo") == "img1"
    assert len(inserted[0].xpath(".//svg:path", namespaces=SVG_NS)) == 6
