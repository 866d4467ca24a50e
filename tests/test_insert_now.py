""" "Insert it as it is now" in the real GTK progress window under Xvfb, over a real tiny-model engine.

The effect runs as Inkscape runs it (its Python, its PYTHONPATH, the installed extension); a driver
inside that process clicks the window's buttons once the optimisation reports, as a designer would.
"""

from __future__ import annotations

import json
import time

import pytest

from bridge.client import EngineClient
from tests.harness.engine import wait_for
from tests.harness.gtk import GTK_DRIVER
from tests.harness.inkscape import (
    TAG,
    embedded_svg,
    levels,
    needs_gtk,
    run_script,
    sketch_layers,
    under_xvfb,
    window_env,
)

pytestmark = pytest.mark.slow  # the real engine process and the real window

NOW_DRIVER = (
    GTK_DRIVER
    + r"""
from sketch_object import ObjectSketch

how, record = sys.argv[1], sys.argv[2]
seen = {}

def visible_buttons(window):
    return [b.get_label() for b in widgets(window, Gtk.Button) if b.get_visible()]

def press(window, label):
    [b for b in widgets(window, Gtk.Button) if b.get_label() == label and b.get_visible()][0].clicked()

def progress_window():
    found = [w for w in Gtk.Window.list_toplevels() if w.get_title() == "Sketch Abstraction" and w.get_visible()
             and not isinstance(w, Gtk.MessageDialog)]
    return found[0] if found else None

def poke():
    window = progress_window()
    labels = [l.get_text() for l in widgets(window, Gtk.Label)] if window else []
    if not any("loss" in text for text in labels):
        return True  # until the optimisation reports
    seen["before"] = visible_buttons(window)
    save()
    if os.environ.get("WINDOW_SCREENSHOT"):  # the README's picture, once GTK has drawn this state
        GLib.timeout_add(1500, shoot, window)
    else:
        press(window, messages.NOW_CHOICE)
        GLib.timeout_add(20, asked)
    return False

def shoot(window):
    gdk_window = window.get_window()
    shot = Gdk.pixbuf_get_from_window(gdk_window, 0, 0, gdk_window.get_width(), gdk_window.get_height())
    shot.savev(os.environ["WINDOW_SCREENSHOT"], "png", [], [])
    press(window, messages.NOW_CHOICE)
    GLib.timeout_add(20, asked)
    return False

def asked():
    window = progress_window()
    labels = [l.get_text() for l in widgets(window, Gtk.Label)] if window else []
    if messages.NOW_READY not in labels:
        return True  # until the sketch as it is now came
    seen["after"] = visible_buttons(window)
    save()
    press(window, messages.STOP_CHOICE if how == "stop" else messages.KEEP_CHOICE)
    GLib.timeout_add(20, answer)
    return False

GLib.timeout_add(20, poke)
ObjectSketch().run(sys.argv[3:])
"""
)

ARGS = ["--id=img1", "--levels=6,3", "--quality=custom", "--seeds=1", "--iterations=300", "--window=true"]


def last_job(env: dict, monkeypatch) -> dict:
    for name in ("HOME", "XDG_RUNTIME_DIR", "SKETCH_ABSTRACTION_RUNTIME_DIR", "SKETCH_ABSTRACTION_DATA_DIR"):
        if name in env:  # this process as a client started in the extension's environment
            monkeypatch.setenv(name, env[name])
    with EngineClient.connect(timeout_s=30) as client:
        return max(client.jobs(), key=lambda job: job["created"])


@pytest.mark.parametrize("how", ["stop", "keep"])
def test_insert_it_as_it_is_now_then_stop_or_keep_it_running(ink_1_2, tmp_path, monkeypatch, how):
    """Mid-job, "Insert it as it is now" brings in every level so far as the usual layers; then "Stop
    the sketch" cancels the job, or "Keep it running in the background" leaves it to the engine and
    Insert Finished Sketches later puts the finished sketch in their place (nobody edited them)."""
    needs_gtk()
    doc, record = embedded_svg(tmp_path / "doc.svg", [{"id": "img1"}]), tmp_path / "window.json"
    env = window_env(ink_1_2, doc, tmp_path)
    out = under_xvfb(NOW_DRIVER, how, str(record), *ARGS, str(doc), cwd=ink_1_2["ext"], env=env)
    assert record.exists(), f"the window never showed optimisation progress: {out.stderr.decode()}"
    shown = json.loads(record.read_text())
    assert shown["before"] == ["Insert it as it is now", "Stop the sketch", "Keep it running in the background"]
    assert shown["after"] == ["Stop the sketch", "Keep it running in the background"], shown
    assert out.returncode == 0 and out.stderr == b"", out.stderr.decode()
    _, tops = sketch_layers(out.stdout)
    assert [top.get("{http://www.inkscape.org/namespaces/inkscape}label") for top in tops] == [f"Sketch of img1{TAG}"]
    assert levels(tops[0]) == [("6 strokes", 6, False), ("3 strokes", 3, True)]  # as a finished one goes in
    job = last_job(ink_1_2["env"], monkeypatch)
    if how == "stop":
        assert "told" not in shown, "nothing to say after a stop"
        wait_for(lambda: last_job(ink_1_2["env"], monkeypatch)["state"] == "cancelled", 60, "the job to be cancelled")
        nothing = run_script(ink_1_2, "sketch_insert.py", doc)
        assert nothing.returncode != 0 and "No sketches are waiting" in nothing.stderr.decode()
        return
    assert job["state"] in ("running", "done"), job  # the engine goes on
    assert any("as it is now is inserted; the engine goes on" in text for text in shown["told"]), shown
    doc.write_bytes(out.stdout)  # the designer keeps working in the document with the early sketch
    deadline = time.monotonic() + 300
    while (inserted := run_script(ink_1_2, "sketch_insert.py", doc)).returncode != 0 and time.monotonic() < deadline:
        assert "Not finished yet" in inserted.stderr.decode(), inserted.stderr.decode()
        time.sleep(1)
    assert inserted.returncode == 0, inserted.stderr.decode()
    assert last_job(ink_1_2["env"], monkeypatch)["state"] == "done"
    _, tops = sketch_layers(inserted.stdout)
    assert len(tops) == 1, "the finished sketch took the place of the one inserted as it was"
    assert levels(tops[0]) == [("6 strokes", 6, False), ("3 strokes", 3, True)]
