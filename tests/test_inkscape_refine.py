"""Refine Sketch in the Inkscape extension: the read-back is the exact inverse of the placement, and
the effect runs for real (directly under Inkscape's Python with each inkex, and inside Inkscape 1.2
under Xvfb) against a tiny-model engine. Harness: tests/test_inkscape_ext.py."""

from __future__ import annotations

import json
import re
import subprocess

import numpy as np
import pytest
from lxml import etree

from engine.strokes import Sketch, StrokeLayer
from engine.svg import sketch_to_svg
from tests.harness import gtk
from tests.harness import inkscape as harness
from tests.harness.inkscape import INKSCAPE_PYTHON, SVG_NS, embedded_svg, run_script

pytestmark = harness.MARKS

REFINE = "org.sketch-abstraction.refine-sketch"
SODIPODI = "{http://sodipodi.sourceforge.net/DTD/sodipodi-0.dtd}"
IMPORTANCE = "{https://sketch-abstraction.org/ns}importance"

ROUND_TRIP = r"""
import json, pathlib, sys
sys.path[:0] = [sys.argv[1]]
import sketchabs, inkex
from bridge.sketchlayer import layer_paths, read_layer
from sketchabs.images import read_photo
from sketchabs.placement import SketchLink, insert_sketch
from sketchabs.readback import to_photo
svg = inkex.load_svg(sys.argv[2]).getroot()
photo = read_photo(svg.getElementById("img1"), sys.argv[2])
engine_svg = pathlib.Path(sys.argv[3]).read_bytes()
top = insert_sketch(svg, engine_svg, photo.element, photo.size, "Sketch", SketchLink("img1", "sketch"))
layer = top[0]
strokes = read_layer(layer, layer_paths(layer), to_photo(photo))
print(json.dumps({"strokes": strokes.strokes, "widths": strokes.widths, "d": layer_paths(layer)[0].get("d")}))
"""


@pytest.mark.parametrize(
    "image, layer",
    [
        ('transform="rotate(30)" preserveAspectRatio="xMinYMid meet"', "translate(10,5)"),
        ('preserveAspectRatio="none"', "matrix(0.8,0.3,-0.2,1.1,7,-3)"),
    ],
)
def test_a_sketch_placed_in_a_transformed_mm_document_reads_back_to_the_same_canvas_points(ink, tmp_path, image, layer):
    generator = np.random.default_rng(0)
    cubic = generator.uniform(0, 500, (5, 4, 2))  # photo px of the 500 x 500 example
    line = generator.uniform(0, 500, (2, 2, 2))
    engine_svg = tmp_path / "engine.svg"
    sketch = Sketch(500, 500, (StrokeLayer("5 strokes", cubic, width=6.7), StrokeLayer("2 strokes", line)))
    engine_svg.write_bytes(sketch_to_svg(sketch))
    written = [np.array(s, float).reshape(-1, 2) for s in _numbers(engine_svg.read_bytes())]  # as the SVG rounds
    doc = embedded_svg(tmp_path / "doc.svg", [{"id": "img1", "attrs": image}], layer_transform=layer)
    out = subprocess.run(
        [INKSCAPE_PYTHON, "-c", ROUND_TRIP, str(ink["ext"]), str(doc), str(engine_svg)],
        capture_output=True,
        env={**ink["env"], "PYTHONPATH": ink["inkex"]},
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    back = json.loads(out.stdout)
    assert len(back["strokes"]) == 5
    canvas_px = 500 / 224  # photo px per canvas px
    for given, read in zip(written[:5], back["strokes"]):
        assert np.abs(np.array(read) - given).max() / canvas_px < 1e-3
    assert back["widths"] == pytest.approx([6.7] * 5, rel=1e-3)
    assert "e" not in back["d"].lower().replace("c", ""), "no exponent in the document's path data"


def _numbers(svg: bytes) -> list[list[float]]:
    root = etree.fromstring(svg)
    return [
        [float(v) for v in p.get("d").replace("M", " ").replace("C", " ").replace("L", " ").split()]
        for p in root.iter("{http://www.w3.org/2000/svg}path")
    ]


def sketch_doc(tmp_path, ink, *engine: str) -> tuple:
    """A document with a sketch inserted by Object Sketch (6 strokes) over the photo, its second path
    locked by the designer. `engine`: the Run tab's engine options (default: this computer's)."""
    doc = embedded_svg(tmp_path / "doc.svg", [{"id": "img1"}])
    out = run_script(
        ink,
        "sketch_object.py",
        doc,
        "--id=img1",
        "--levels=6",
        "--quality=custom",
        "--seeds=1",
        "--iterations=2",
        "--window=false",
        *engine,
    )
    assert out.returncode == 0 and out.stderr == b"", out.stderr.decode()
    root = etree.fromstring(out.stdout)
    layer = root.xpath("//svg:g[@inkscape:label='6 strokes']", namespaces=SVG_NS)[0]
    paths = layer.xpath("svg:path", namespaces=SVG_NS)
    paths[1].set(f"{SODIPODI}insensitive", "true")
    doc.write_bytes(etree.tostring(root))
    return doc, layer.get("id"), [p.get("id") for p in paths], etree.tostring(paths[1])


def test_refine_sketch_replaces_the_layers_paths_in_place_around_a_locked_one(ink, tmp_path):
    doc, layer_id, ids, locked = sketch_doc(tmp_path, ink)
    out = run_script(
        ink,
        "sketch_refine.py",
        doc,
        "--id=img1",
        f"--id={ids[0]}",
        "--iterations=11",
        "--change=add",
        "--count=2",
        "--window=false",
    )
    assert out.returncode == 0 and out.stderr == b"", out.stderr.decode()
    root = etree.fromstring(out.stdout)
    layer = root.xpath(f"//svg:g[@id='{layer_id}']", namespaces=SVG_NS)[0]
    assert layer.get("{http://www.inkscape.org/namespaces/inkscape}label") == "8 strokes"
    paths = layer.xpath("svg:path", namespaces=SVG_NS)
    assert len(paths) == 8 and [p.get("id") for p in paths[:6]] == ids, "same paths, same order, new ones after"
    assert etree.tostring(paths[1]) == locked, "the locked path is untouched"
    assert all(p.get(IMPORTANCE) for p in paths[:1] + paths[2:])
    assert len({p.get("id") for p in root.iter() if p.get("id")}) == len([p for p in root.iter() if p.get("id")])


def test_refine_sketch_simplify_to_as_many_strokes_aborts_with_a_message_and_leaves_the_document(ink, tmp_path):
    doc, _, ids, _ = sketch_doc(tmp_path, ink)
    args = ("--id=img1", f"--id={ids[0]}", "--iterations=11", "--change=simplify", "--count=6", "--window=false")
    out = run_script(ink, "sketch_refine.py", doc, *args)
    assert out.returncode != 0 and "Cannot simplify 6 strokes (1 locked) to 6" in out.stderr.decode()
    assert out.stdout == b""


def test_the_dialog_offers_the_shared_engine_as_object_sketch_does_and_says_what_its_messages_quote():
    ns = {"i": "http://www.inkscape.org/namespace/inkscape/extension"}
    inx = {
        name: etree.parse(str(harness.ROOT / "inkscape_ext" / f"{name}.inx"))
        for name in ("sketch_object", "sketch_refine")
    }
    for param in ("engine", "remote"):
        found = [etree.tostring(tree.find(f".//i:param[@name='{param}']", ns)) for tree in inx.values()]
        assert found[0] == found[1], param
    labels = [option.text for option in inx["sketch_refine"].iterfind(".//i:param[@name='change']/i:option", ns)]
    assert "Add strokes where the sketch misses edges of the photo" in labels  # messages.REFINE_ADD_LABEL
    assert inx["sketch_refine"].find(".//i:page[@name='refine']", ns).get("gui-text") == "Refine"  # REFINE_TAB


LAYER = '<g inkscape:groupmode="layer" id="{id}" inkscape:label="{id}">{paths}</g>'
LINE = '<path id="{id}" d="M 10 10 L 40 40" style="stroke:#000;stroke-width:1"{extra}/>'


@pytest.mark.parametrize(
    "images, selection, extra, words",
    [
        (["img1"], ["--id=img1"], "", "No sketch layer is selected. Select some paths of the sketch layer"),
        (
            ["img1", "img2"],
            ["--id=a"],
            LAYER.format(id="L", paths=LINE.format(id="a", extra="")),
            "has none or several",
        ),
        (
            ["img1"],
            ["--id=img1"],
            '<sodipodi:namedview inkscape:current-layer="Empty"/>' + LAYER.format(id="Empty", paths=""),
            "The layer 'Empty' has no paths to refine. Select paths of the sketch layer",
        ),
        (
            ["img1"],
            ["--id=img1", "--id=a", "--id=b"],
            LAYER.format(id="L", paths=LINE.format(id="a", extra=""))
            + LAYER.format(id="M", paths=LINE.format(id="b", extra="")),
            "The selected paths lie in different layers",
        ),
        (
            ["img1"],
            ["--id=img1", "--id=round"],
            LAYER.format(id="L", paths='<path id="round" d="M 10 10 A 5 5 0 0 1 20 20"/>'),
            "Path 'round' in the sketch layer cannot be refined: an elliptical arc (A) is not a Bézier stroke."
            "\n\nWhat to do: Move it to another layer, or redraw it with the pen or pencil tool.",
        ),
        (
            ["img1"],
            ["--id=img1", "--id=a"],
            LAYER.format(id="L", paths=LINE.format(id="a", extra=' sodipodi:insensitive="true"')),
            "Every stroke is locked: there is nothing to optimise.\n\nWhat to do: Unlock some strokes (in Inkscape: "
            "Object > Unlock All), or add new ones ('Add strokes where the sketch misses edges of the photo' on the "
            "Refine tab).",
        ),
    ],
    ids=["no-layer", "no-single-photo", "empty-layer", "two-layers", "an-arc", "all-locked"],
)
def test_refine_sketch_refusals_say_what_to_do_in_inkscape_and_leave_the_document(
    ink_1_2, tmp_path, images, selection, extra, words
):
    doc = embedded_svg(tmp_path / "doc.svg", [{"id": i} for i in images], extra=extra)
    out = run_script(ink_1_2, "sketch_refine.py", doc, *selection, "--window=false")
    stderr = out.stderr.decode()
    assert out.returncode != 0 and words in stderr and out.stdout == b"", stderr
    assert stderr[0].isupper() and not re.search(r"sketch-abstraction|--[a-z]|Traceback|Error\b", stderr), stderr


def test_refine_sketch_in_real_inkscape_keeps_the_locked_path_and_its_namespace_on_save(setup, tmp_path):
    ink_12 = {**setup, "inkex": "/usr/share/inkscape/extensions"}
    doc, layer_id, ids, locked = sketch_doc(tmp_path, ink_12)
    prefs = {"iterations": "11", "change": "add", "count": "2", "window": "false"}
    result, png = tmp_path / "result.svg", tmp_path / "result.png"
    actions = (
        f"select-by-id:img1,{ids[0]};{REFINE}.noprefs;export-filename:{result};export-do;"
        f"export-filename:{png};export-type:png;export-dpi:96;export-do"
    )
    harness.inkscape_runs(setup, REFINE, prefs, actions, doc, timeout_s=200)
    root = etree.fromstring(result.read_bytes())
    layer = root.xpath(f"//svg:g[@id='{layer_id}']", namespaces=SVG_NS)[0]
    paths = layer.xpath("svg:path", namespaces=SVG_NS)
    assert len(paths) == 8 and [p.get("id") for p in paths[:6]] == ids, "the effect ran inside Inkscape"
    assert paths[1].get(f"{SODIPODI}insensitive") == "true" and paths[1].get("d") == etree.fromstring(locked).get("d")
    refined = [p for p in paths if p.get("id") != ids[1]]
    assert all(p.get(IMPORTANCE) for p in refined), "Inkscape keeps the project's namespace when it saves"


def test_refine_sketchs_window_shows_the_refinement_taking_shape_and_stops_it(ink_1_2, tmp_path):
    """Refine Sketch's window: the live picture of the strokes so far, the test-model note, and "Stop
    the sketch" cancels the refinement in the engine, leaving the designer's layer as it was."""
    harness.needs_gtk()
    doc, _layer_id, ids, _locked = sketch_doc(tmp_path, ink_1_2)
    before, record = doc.read_bytes(), tmp_path / "window.json"
    args = ["--id=img1", f"--id={ids[0]}", "--iterations=2000", "--window=true"]
    env = {**harness.window_env(ink_1_2, doc, tmp_path), "EFFECT": "sketch_refine:RefineSketch"}
    out = harness.under_xvfb(gtk.WINDOW_DRIVER, "stop", str(record), *args, str(doc), cwd=ink_1_2["ext"], env=env)
    assert record.exists(), f"the window never showed optimisation progress: {out.stderr.decode()}"
    shown = json.loads(record.read_text())
    assert max(shown["preview"]) == 256, "the live preview shows the refinement so far"
    assert "Running with test models: the strokes mean nothing." in shown["labels"], shown
    assert any(text.startswith(f"Refined 6 strokes{harness.TAG}") for text in shown["labels"]), shown
    assert out.returncode == 251 and out.stderr == b"", "a stop is not an error: no dialog, nothing to say"
    assert out.returncode != 0 and out.stdout == b"" and doc.read_bytes() == before
