"""A designer's work is never lost: Replace only replaces a sketch nobody touched, importance scores
survive insertion, a batch run never waits for a click, a stop leaves the document and the selection
as they were, and a batch of photos skips what it cannot read. Inkscape 1.2 itself under Xvfb where
the subject is Inkscape's; direct runs under its Python otherwise. Harness: tests/test_inkscape_ext.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from lxml import etree

from tests import test_inkscape_ext as harness
from tests.test_inkscape_ext import OBJECT, SVG_NS, TAG, embedded_svg, run_script

pytestmark = harness.pytestmark
setup, ink_1_2 = harness.setup, harness.ink_1_2  # an installed extension, a tiny engine

INSERT = "org.sketch-abstraction.insert-finished"
REFINE = "org.sketch-abstraction.refine-sketch"
LABEL = f"{{{SVG_NS['inkscape']}}}label"
LOCK = "{http://sodipodi.sourceforge.net/DTD/sodipodi-0.dtd}insensitive"
FAST = ["--levels=6,3", "--quality=custom", "--seeds=1", "--iterations=10", "--window=false"]
FAST_PREFS = {"levels": "6,3", "quality": "custom", "seeds": "1", "iterations": "10", "window": "false"}


def sketches(svg_bytes: bytes) -> dict:
    """The sketch layers by variation number."""
    found = etree.fromstring(svg_bytes).xpath("//svg:g[@data-sketch-photo]", namespaces=SVG_NS)
    return {int(g.get("data-sketch-variation")): g for g in found}


def strokes(layer) -> list[str]:
    return layer.xpath(".//svg:path/@d", namespaces=SVG_NS)


def sketched(ink, tmp_path: Path) -> Path:
    """A saved document whose photo has an Object Sketch (6 + 3 strokes) nobody touched."""
    doc = embedded_svg(tmp_path / "doc.svg", [{"id": "img1"}])
    first = run_script(ink, "sketch_object.py", doc, "--id=img1", *FAST)
    assert first.returncode == 0 and first.stderr == b"", first.stderr.decode()
    (saved := tmp_path / "sketched.svg").write_bytes(first.stdout)
    return saved


def replace_in_inkscape(setup, doc: Path, tmp_path: Path) -> tuple[dict, str]:
    """Inkscape 1.2 runs Object Sketch with "Replace its previous sketch" on `doc`: (the sketch layers
    of the result by variation, what the effect said on Inkscape's own stderr)."""
    result = tmp_path / "replaced.svg"
    actions = f"select-by-id:img1;{OBJECT}.noprefs;export-filename:{result};export-do"
    out = harness.inkscape_runs(setup, OBJECT, {**FAST_PREFS, "rerun": "replace"}, actions, doc)
    return sketches(result.read_bytes()), out.stderr.decode()


def test_replace_in_real_inkscape_keeps_a_sketch_with_a_locked_stroke_and_adds_a_variation(setup, tmp_path):
    ink = {**setup, "inkex": harness.SYSTEM_EXTENSIONS}
    saved = sketched(ink, tmp_path)
    root = etree.fromstring(saved.read_bytes())
    [layer] = sketches(saved.read_bytes()).values()
    root.xpath(f"//svg:g[@id='{layer.get('id')}']//svg:path", namespaces=SVG_NS)[1].set(LOCK, "true")
    saved.write_bytes(etree.tostring(root))

    after, said = replace_in_inkscape(setup, saved, tmp_path)
    assert sorted(after) == [1, 2], "the locked sketch is kept and the new one is a variation"
    assert strokes(after[1]) == strokes(layer) and after[1].xpath(".//@*[name()='sodipodi:insensitive']")
    assert after[2].get(LABEL) == f"Sketch of img1 (variation 2){TAG}"
    assert strokes(after[2]) != strokes(layer), "a variation has other random starts"
    assert f"'Sketch of img1{TAG}' was edited, refined or locked since it was inserted, so it was kept" in said, said


def test_replace_in_real_inkscape_keeps_a_refined_sketch_and_still_replaces_an_untouched_one(setup, tmp_path):
    ink = {**setup, "inkex": harness.SYSTEM_EXTENSIONS}
    saved = sketched(ink, tmp_path)
    [layer] = sketches(saved.read_bytes()).values()
    untouched, said = replace_in_inkscape(setup, saved, tmp_path)
    assert list(untouched) == [1] and strokes(untouched[1]) == strokes(layer) and "was kept" not in said

    first_path = layer.xpath(".//svg:path/@id", namespaces=SVG_NS)[0]
    refine = ("--id=img1", f"--id={first_path}", "--iterations=11", "--window=false")
    refined = run_script(ink, "sketch_refine.py", saved, *refine)
    assert refined.returncode == 0, refined.stderr.decode()
    saved.write_bytes(refined.stdout)
    after, said = replace_in_inkscape(setup, saved, tmp_path)
    assert sorted(after) == [1, 2] and strokes(after[1]) == strokes(sketches(refined.stdout)[1]), "refined: kept"
    assert "was kept as it is" in said, said


def test_a_sketch_edited_while_it_was_made_is_kept_when_it_comes_in(ink_1_2, tmp_path):
    """Submit and return with Replace, then the designer moves a stroke; Insert Finished Sketches
    puts the result in as a variation and keeps the edit."""
    saved = sketched(ink_1_2, tmp_path)
    submitted = run_script(ink_1_2, "sketch_object.py", saved, "--id=img1", *FAST, "--detach=true")
    assert "Submitted 1 sketch" in submitted.stderr.decode()
    root = etree.fromstring(saved.read_bytes())
    path = root.xpath("//svg:g[@data-sketch-photo]//svg:path", namespaces=SVG_NS)[0]
    path.set("transform", "translate(3,0)")
    saved.write_bytes(etree.tostring(root))
    for _ in range(240):
        inserted = run_script(ink_1_2, "sketch_insert.py", saved)
        if inserted.returncode == 0:
            break
    assert inserted.returncode == 0, inserted.stderr.decode()
    after = sketches(inserted.stdout)
    assert sorted(after) == [1, 2] and after[1].xpath(".//svg:path[@transform='translate(3,0)']", namespaces=SVG_NS)
    assert after[2].get(LABEL) == f"Sketch of img1 (variation 2){TAG}"
    assert "was kept as it is" in inserted.stderr.decode()


def test_nothing_waits_for_a_click_in_a_batch_run(setup, tmp_path):
    """Insert Finished Sketches with nothing waiting, inside `inkscape --batch-process` under Xvfb (a
    display, so GTK could open a window nobody can close): the run ends, the message is on
    Inkscape's own stderr, the document is unchanged."""
    doc = embedded_svg(tmp_path / "doc.svg", [{"id": "img1"}])
    result = tmp_path / "result.svg"
    out = harness.inkscape_runs(
        setup, INSERT, {}, f"{INSERT}.noprefs;export-filename:{result};export-do", doc, timeout_s=60
    )
    assert "No sketches are waiting for this document's images" in out.stderr.decode(), out.stderr.decode()
    assert sketches(result.read_bytes()) == {}


IMPORTANCE = "{https://sketch-abstraction.org/ns}importance"


def test_importance_scores_survive_insertion_and_refinement_in_real_inkscape(setup, tmp_path):
    """Inkscape 1.2 runs Object Sketch, then Refine Sketch on the saved result: every stroke keeps its
    sketchabs:importance, under the project's prefix declared on the root (never a made-up ns0:)."""
    doc = embedded_svg(tmp_path / "doc.svg", [{"id": "img1"}])
    sketched_file = tmp_path / "sketched.svg"
    actions = f"select-by-id:img1;{OBJECT}.noprefs;export-filename:{sketched_file};export-do"
    harness.inkscape_runs(setup, OBJECT, FAST_PREFS, actions, doc)
    saved = sketched_file.read_bytes()
    root = etree.fromstring(saved)
    [layer] = sketches(saved).values()
    paths = layer.xpath(".//svg:path", namespaces=SVG_NS)
    assert len(paths) == 9 and all(float(p.get(IMPORTANCE)) >= 0 for p in paths), "every stroke keeps its score"
    assert root.nsmap.get("sketchabs") == "https://sketch-abstraction.org/ns" and b"ns0:" not in saved

    refined_file = tmp_path / "refined.svg"
    first = paths[0].get("id")
    prefs = {"iterations": "11", "change": "none", "window": "false"}
    actions = f"select-by-id:img1,{first};{REFINE}.noprefs;export-filename:{refined_file};export-do"
    harness.inkscape_runs(setup, REFINE, prefs, actions, sketched_file)
    refined = refined_file.read_bytes()
    [layer] = sketches(refined).values()
    assert all(p.get(IMPORTANCE) for p in layer.xpath(".//svg:path", namespaces=SVG_NS))
    assert etree.fromstring(refined).nsmap.get("sketchabs") and b"ns0:" not in refined


def stop_when_running(ink, doc: Path, said: list) -> None:
    """Wait until the engine runs a sketch, then cancel every sketch (Stop Sketches); `said`: what it said."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if "running, optimise" in run_script(ink, "sketch_status.py", doc).stderr.decode():
            said.append(run_script(ink, "sketch_stop.py", doc, "--which=all").stderr.decode())
            return
        time.sleep(0.5)


def test_a_stop_in_real_inkscape_keeps_the_document_and_the_selection_and_says_nothing(setup, tmp_path):
    """Inkscape 1.2 runs Object Sketch on a photo and its mask path, both selected; the designer stops
    the sketch (Stop Sketches) while it runs. No dialog (nothing on stderr from the effect), the
    document is as it was, and the photo and the path are still selected for the next try."""
    ink = {**setup, "inkex": harness.SYSTEM_EXTENSIONS}
    doc = embedded_svg(tmp_path / "doc.svg", [{"id": "img1"}], extra='<path id="m" d="M 40 25 L 70 25 L 55 65 Z"/>')
    said: list = []
    stopper = threading.Thread(target=stop_when_running, args=(ink, doc, said))
    stopper.start()
    prefs = {**FAST_PREFS, "levels": "6", "iterations": "100000", "converge": "false", "mask": "path"}
    result = tmp_path / "result.svg"
    actions = f"select-by-id:img1,m;{OBJECT}.noprefs;select-list;export-filename:{result};export-do"
    out = harness.inkscape_runs(setup, OBJECT, prefs, actions, doc, timeout_s=200)
    stopper.join()
    assert said and "Stopped 1 sketch in the engine" in said[0], said
    selected = [line.split()[0] for line in out.stdout.decode().splitlines() if "cloned:" in line]
    assert sorted(selected) == ["img1", "m"], out.stdout.decode()
    assert "cancelled" not in out.stderr.decode() and "Sketch Abstraction" not in out.stderr.decode()
    assert sketches(result.read_bytes()) == {}, "nothing inserted"


def test_a_batch_sketches_what_it_can_read_and_names_the_skipped_photos_at_the_end(ink_1_2, tmp_path):
    """'All images in the current layer' with one photo too large and one missing file: the readable
    photo is sketched, the others are named at the end with the reason; all unreadable: nothing is
    inserted and each is named."""
    huge = {"id": "huge", "x": 100, "href": harness.png_header(65535, 65535)}
    gone = {"id": "gone", "x": 200, "href": "missing.png"}
    doc = embedded_svg(tmp_path / "doc.svg", [{"id": "img1"}, huge, gone])
    out = run_script(ink_1_2, "sketch_object.py", doc, "--scope=layer", *FAST, timeout=120)
    said = out.stderr.decode()
    assert out.returncode == 0, said
    assert [g.get("data-sketch-photo") for g in sketches(out.stdout).values()] == ["img1"]
    assert "Not sketched: 'huge'. Image 'huge' is too large: 65535 x 65535" in said, said
    assert "Not sketched: 'gone'. Image 'gone' links to missing.png, which cannot be read" in said, said

    doc = embedded_svg(tmp_path / "none.svg", [huge, gone])
    out = run_script(ink_1_2, "sketch_object.py", doc, "--scope=layer", *FAST, timeout=120)
    said = out.stderr.decode()
    assert out.returncode == 251 and out.stdout == b"" and "'huge'" in said and "'gone'" in said, said


ESTIMATE_DRIVER = (
    harness.GTK_DRIVER
    + r"""
from sketch_object import FASTER_LABEL, ObjectSketch

choice, record = sys.argv[1], sys.argv[2]
seen = {}

def press(window, label):
    [b for b in widgets(window, Gtk.Button) if b.get_label() == label][0].clicked()

def poke():
    for window in Gtk.Window.list_toplevels():
        if not window.get_visible():
            continue
        if window.get_title() == messages.ESTIMATE_TITLE and "screen" not in seen:
            seen.update(screen=[l.get_text() for l in widgets(window, Gtk.Label)],
                        buttons=[b.get_label() for b in widgets(window, Gtk.Button)])
            save()
            GLib.timeout_add(1500 if os.environ.get("WINDOW_SCREENSHOT") else 20, choose, window)
        elif window.get_title() == "Sketch Abstraction" and widgets(window, Gtk.ProgressBar):
            bar = widgets(window, Gtk.ProgressBar)[0].get_text()
            if bar and bar.startswith("optimise") and seen.get("bar") != bar:
                seen["bar"] = bar
                save()
    return True

def choose(window):
    if os.environ.get("WINDOW_SCREENSHOT"):
        gdk_window = window.get_window()
        shot = Gdk.pixbuf_get_from_window(gdk_window, 0, 0, gdk_window.get_width(), gdk_window.get_height())
        shot.savev(os.environ["WINDOW_SCREENSHOT"], "png", [], [])
    labels = {"start": messages.START_CHOICE, "cancel": messages.CANCEL_CHOICE,
              "faster": messages.faster_choice(FASTER_LABEL)}
    press(window, labels[choice])
    return False

GLib.timeout_add(20, poke)
ObjectSketch().run(sys.argv[3:])
"""
)


@pytest.mark.parametrize("choice", ["start", "faster", "cancel"])
def test_a_long_job_shows_its_estimate_first_and_starts_goes_faster_or_cancels(ink_1_2, tmp_path, choice):
    """The real GTK window under Xvfb: after the engine has measured its speed, an Object Sketch whose
    estimate is long shows it first (this engine, this photo, the faster preset's cost) and does what
    the designer picks: starts it as chosen, starts the Fast preset instead, or cancels (nothing
    submitted, nothing said, the document unchanged)."""
    harness.needs_gtk()
    doc, record = embedded_svg(tmp_path / "doc.svg", [{"id": "img1"}]), tmp_path / "screen.json"
    assert run_script(ink_1_2, "sketch_object.py", doc, "--id=img1", *FAST).returncode == 0  # the speed, measured
    args = ["--id=img1", "--levels=6", "--quality=custom", "--seeds=1", "--iterations=100000", "--window=true"]
    env = harness.window_env(ink_1_2, doc, tmp_path)
    out = harness.under_xvfb(ESTIMATE_DRIVER, choice, str(record), *args, str(doc), cwd=ink_1_2["ext"], env=env)
    assert record.exists(), f"no estimate screen: {out.stderr.decode()}"
    shown = json.loads(record.read_text())
    [text] = [t for t in shown["screen"] if t.startswith("Sketching")]
    assert re.search(r"this photo takes at most \d+ (s|min) on this engine \(cpu\)", text), text
    assert re.search(r"Fast \(1 seed, 500 iterations\) takes at most \d+ (s|min)\.", text), text
    assert shown["buttons"] == ["Cancel", "Use Fast (1 seed, 500 iterations) instead", "Start it"], shown
    if choice == "cancel":
        assert out.returncode == 251 and out.stderr == b"" and b"Sketch of" not in out.stdout, out.stderr.decode()
        assert "bar" not in shown, "nothing was started"
    else:  # the job runs as picked (tiny models settle early, so it ends well before its iterations)
        assert shown["bar"].endswith("/ 100000" if choice == "start" else "/ 500"), shown
        assert out.returncode == 0 and b"Sketch of" in out.stdout, out.stderr.decode()


WITHOUT_GTK = r"""
import runpy, sys
sys.modules["gi"] = None  # Inkscape's Python without PyGObject, as Debian's Inkscape comes
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_without_gtk_the_sketch_runs_in_the_background_and_can_be_stopped(ink_1_2, tmp_path):
    """A designer at a display whose Inkscape Python lacks the GTK bindings: Inkscape is not blocked
    with no way to stop; the sketch goes to the engine, the message names Stop Sketches (which then
    cancels it) and Insert Finished Sketches."""
    harness.needs_gtk()  # for xvfb-run's display; GTK itself is hidden from the effect
    doc = embedded_svg(tmp_path / "doc.svg", [{"id": "img1"}])
    args = ["--id=img1", "--levels=6", "--quality=custom", "--seeds=1", "--iterations=100000", "--converge=false"]
    args += ["--window=true"]
    env = harness.window_env(ink_1_2, doc, tmp_path)
    out = harness.under_xvfb(WITHOUT_GTK, "sketch_object.py", *args, str(doc), cwd=ink_1_2["ext"], env=env)
    said = out.stderr.decode()
    assert out.returncode == 251 and b"Sketch of" not in out.stdout, said
    assert "Submitted 1 sketch to the engine, where it runs in the background" in said, said
    assert "To stop: Extensions > Sketch Abstraction > Tools > Stop Sketches" in said, said
    assert "Insert Finished Sketches" in said, said
    stopped = run_script(ink_1_2, "sketch_stop.py", doc, "--which=document")
    assert "Stopped 1 sketch in the engine" in stopped.stderr.decode(), stopped.stderr.decode()


# -- the smaller things ------------------------------------------------------------------------------------


def test_strokes_are_named_by_rank_and_an_identical_replacement_is_said(ink_1_2, tmp_path):
    """The Objects panel names strokes "stroke 01" (most important first), and replacing a sketch with
    the same settings (the same sketch) says that nothing changed instead of nothing at all."""
    saved = sketched(ink_1_2, tmp_path)
    [layer] = sketches(saved.read_bytes()).values()
    six = layer.xpath(".//svg:g[@inkscape:label='6 strokes']/svg:path", namespaces=SVG_NS)
    assert [p.get(LABEL) for p in six] == [f"stroke {i:02d}" for i in range(1, 7)]
    scores = [float(p.get(IMPORTANCE)) for p in six]
    assert scores == sorted(scores, reverse=True), "stroke 01 is the most important"
    again = run_script(ink_1_2, "sketch_object.py", saved, "--id=img1", *FAST)
    assert again.returncode == 0 and list(sketches(again.stdout)) == [1]
    assert f"'Sketch of img1{TAG}' came out exactly like the sketch it replaced" in again.stderr.decode()


def test_engine_status_lists_this_documents_sketches_first_and_counts_the_rest(ink_1_2, tmp_path):
    here = embedded_svg(tmp_path / "here.svg", [{"id": "img1", "attrs": 'inkscape:label="Dancer"'}])
    there = embedded_svg(tmp_path / "there.svg", [{"id": "img9", "attrs": 'inkscape:label="Horse"'}])
    for doc, image in ((here, "img1"), (there, "img9")):
        assert run_script(ink_1_2, "sketch_object.py", doc, f"--id={image}", *FAST).returncode == 0
    said = run_script(ink_1_2, "sketch_status.py", here).stderr.decode()
    assert "This document's sketches:" in said and re.search(r"\d\d:\d\d  Dancer: done", said), said
    assert "Horse" not in said and re.search(r"And \d+ other sketch(es)? of other documents", said), said


WINDOW_TITLE = r"""
import json, sys, time
import gi
gi.require_version("Gtk", "3.0")
from gi.repository import Gtk
import sketchabs
from sketchabs import engine_link, messages, progress
jobs = [engine_link.PendingJob("0" * 32, "img1", "", "Sketch of img1 (variation 2)", (4, 4), time.time())]
window = progress._Window.open(jobs, False, messages.NEW_VARIATION_NOTE)
while Gtk.events_pending():
    Gtk.main_iteration()
labels = [w.get_text() for w in window.window.get_child().get_children() if isinstance(w, Gtk.Label)]
print(json.dumps({"title": window.window.get_title(), "labels": labels}))
"""


def test_the_progress_window_says_new_variation_is_on_and_counts_in_words(ink_1_2, tmp_path):
    harness.needs_gtk()
    doc = embedded_svg(tmp_path / "doc.svg", [{"id": "img1"}])
    env = harness.window_env(ink_1_2, doc, tmp_path)
    out = harness.under_xvfb(WINDOW_TITLE, cwd=ink_1_2["ext"], env=env, timeout=60)
    shown = json.loads(out.stdout)
    assert shown["title"] == "Sketch Abstraction: New variation (the Sketch tab's choice, kept from the last run)"
    assert "Waiting for the engine (1 photo)" in shown["labels"], shown


def test_custom_quality_starts_from_the_standard_presets_values():
    """The Custom fields are shown whatever the preset: they show Standard's values, not the paper's."""
    ns = {"i": "http://www.inkscape.org/namespace/inkscape/extension"}
    inx = etree.parse(str(harness.ROOT / "inkscape_ext" / "sketch_object.inx"))
    shown = {p.get("name"): p.text for p in inx.iterfind(".//i:param", ns)}
    default = inx.find(".//i:param[@name='quality']/i:option", ns).get("value")
    assert default == "standard" and (int(shown["seeds"]), int(shown["iterations"])) == (2, 1000)
    assert "Standard (2 seeds, 1000 iterations)" in etree.tostring(inx, encoding="unicode")


# -- linked photos keep their link ---------------------------------------------------------------------------

XLINK = "{http://www.w3.org/1999/xlink}href"


def linked_doc(folder: Path) -> Path:
    """A saved document in `folder` whose photo is linked by a relative path, as a designer imports it."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(harness.EXAMPLE, folder / "camel.png")
    return embedded_svg(folder / "doc.svg", [{"id": "img1", "href": "camel.png"}])


def test_a_linked_photo_keeps_its_link_in_real_inkscape_1_2(setup, tmp_path):
    doc = linked_doc(tmp_path / "art")
    result = doc.parent / "result.svg"
    actions = f"select-by-id:img1;{OBJECT}.noprefs;export-filename:{result};export-do"
    out = harness.inkscape_runs(setup, OBJECT, FAST_PREFS, actions, doc)
    root = etree.fromstring(result.read_bytes())
    assert root.xpath("//svg:image", namespaces=SVG_NS)[0].get(XLINK) == "camel.png", out.stderr.decode()
    assert list(sketches(result.read_bytes())) == [1]


REBASED = r"""
import sys
import sketchabs, inkex
from sketchabs import links
svg = inkex.load_svg(sys.argv[1]).getroot()
print(inkex.__version__, links.restore(svg, sys.argv[1], sys.argv[2]), svg.getElementById("img1").get("xlink:href"))
"""


@pytest.mark.parametrize("inkex_version", ["1.2.0", "1.3.1", "1.4.1"])
def test_links_rebased_to_inkscapes_temporary_copy_are_written_back_where_inkscape_does_not(tmp_path, inkex_version):
    """Inkscape's temporary copy one folder above the document, links rebased to it (as 1.2 and 1.4
    hand them over), read by each Inkscape's inkex: 1.2 rebases them back itself (left alone), 1.3 and
    1.4 do not (written back as the designer wrote them)."""
    doc = linked_doc(tmp_path / "art")
    copy = tmp_path / "ink_ext_XXXXXX.svg"
    copy.write_text(doc.read_text().replace('href="camel.png"', 'href="art/camel.png"'))
    ext = harness.ROOT / "inkscape_ext"
    vendor = tmp_path / "vendor"
    shutil.copytree(harness.ROOT / "bridge", vendor / "bridge")
    out = subprocess.run(
        [harness.INKSCAPE_PYTHON, "-c", REBASED, str(copy), str(doc)],
        cwd=ext,
        env={**os.environ, "PYTHONPATH": f"{ext}:{vendor}:{harness.INKEX[inkex_version]}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    expected = "art/camel.png" if inkex_version == "1.2.0" else "camel.png"
    assert out.stdout.split() == [inkex_version, str(int(expected == "camel.png")), expected]
