"""The Inkscape extension, installed by install.py into a temporary profile and run for real:
directly under Inkscape's Python (as Inkscape runs it) and inside Inkscape 1.2 itself, headless under
Xvfb, against the real engine process with tiny models."""

from __future__ import annotations

import io
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from lxml import etree
from PIL import Image

from tests.harness.gtk import WINDOW_DRIVER
from tests.harness.inkscape import (
    EXAMPLE,
    FAST,
    INKSCAPE_PYTHON,
    MARKS,
    OBJECT,
    ROOT,
    SCENE,
    SVG_NS,
    SYSTEM_EXTENSIONS,
    TAG,
    embedded_svg,
    inkscape_runs,
    levels,
    needs_gtk,
    path_points,
    png_header,
    run_script,
    sketch_layers,
    under_xvfb,
    window_env,
    xvfb_run,
)

pytestmark = MARKS


def test_object_sketch_layers_sit_exactly_over_the_photo(ink, tmp_path):
    """mm document with a scaled viewBox, a translated layer, a non-square image box (meet)."""
    doc = embedded_svg(tmp_path / "doc.svg", [{"id": "img1"}])
    out = run_script(ink, "sketch_object.py", doc, "--id=img1", *FAST)
    assert out.returncode == 0 and out.stderr == b"", out.stderr.decode()
    root, tops = sketch_layers(out.stdout)
    assert len(tops) == 1
    assert levels(tops[0]) == [("6 strokes", 6, False), ("3 strokes", 3, True)]
    # 500 x 500 px photo in an 80 x 60 box at (5, 10), xMidYMid meet: 60 x 60 centred -> x 15..75,
    # then the layer's translate(10, 5): the strokes stay within x 25..85, y 15..75 (+ stroke reach).
    pts = path_points(tops[0])
    assert pts[:, 0].min() >= 25 - 1 and pts[:, 0].max() <= 85 + 1
    assert pts[:, 1].min() >= 15 - 1 and pts[:, 1].max() <= 75 + 1
    assert all(" C " in d or d.count("C") for d in tops[0].xpath(".//svg:path/@d", namespaces=SVG_NS))
    image = root.xpath("//svg:image[@id='img1']", namespaces=SVG_NS)[0]
    assert image.get("width") == "80" and image.getparent().get("id") == "layer1", "the photo is untouched"


CELL = re.compile(r"Simplicity (\d+)/(\d+) - (\d+) strokes?")
INKSCAPE_LABEL = f"{{{SVG_NS['inkscape']}}}label"


def sublayers(g) -> list:
    return g.xpath("svg:g[@inkscape:groupmode='layer']", namespaces=SVG_NS)


def shown(element) -> bool:
    """Whether Inkscape draws `element`: neither it nor any group around it is hidden."""
    return all("display:none" not in (e.get("style") or "") for e in [element, *element.iterancestors()])


def assert_scene_layers(top, layers: list[int], levels: int, background: bool) -> None:
    """The matrix as the engine writes it, inserted under `top`: a layer per fidelity column, in it a
    layer per simplicity row (a cell), in each cell Background then Object (Object on top); only
    native layers, one cell drawn."""
    assert all(g.get(f"{{{SVG_NS['inkscape']}}}groupmode") == "layer" for g in top.iter(f"{{{SVG_NS['svg']}}}g"))
    columns = sublayers(top)
    assert [c.get(INKSCAPE_LABEL) for c in columns] == [f"Fidelity {n} (ViT layer {n})" for n in layers]
    cells, backgrounds = [], []
    for column in columns:
        assert not column.xpath("svg:path", namespaces=SVG_NS) and shown(column)
        rows = [CELL.fullmatch(c.get(INKSCAPE_LABEL)) for c in sublayers(column)]
        assert [(int(m[1]), int(m[2])) for m in rows] == [(r, levels) for r in range(levels + 1)]
        for match, cell in zip(rows, sublayers(column)):
            parts = sublayers(cell)
            assert [p.get(INKSCAPE_LABEL) for p in parts] == ["Background", "Object"]
            counts = [len(p.xpath("svg:path", namespaces=SVG_NS)) for p in parts]
            assert counts[1] > 0 and 0 < int(match[3]) <= sum(counts), counts
            backgrounds.append(counts[0])
            cells.append(cell)
    assert (sum(backgrounds) > 0) == background, backgrounds  # a simple cell's few may all lie under the object
    assert [shown(c) for c in cells] == [True] + [False] * (len(cells) - 1), "the first cell is the one drawn"


def curve_points(top, samples: int = 50) -> np.ndarray:
    """Points along every stroke under `top` (one absolute M x y then C/Q/L segment, as the effect writes)."""
    t = np.linspace(0, 1, samples)[:, None]
    pts = []
    for d in top.xpath(".//svg:path/@d", namespaces=SVG_NS):
        assert re.fullmatch(r"M [^A-Za-z]+ [CQL] [^A-Za-z]+", d.strip()), d
        control = np.array([float(v) for v in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", d)]).reshape(-1, 2)
        k = len(control) - 1
        pts.append(sum(math.comb(k, i) * t**i * (1 - t) ** (k - i) * control[i] for i in range(k + 1)))
    return np.concatenate(pts)


def test_scene_sketch_inserts_a_layer_per_fidelity_column_holding_its_cells(ink_1_2, tmp_path):
    doc = embedded_svg(tmp_path / "doc.svg", [{"id": "img1"}])
    out = run_script(
        ink_1_2,
        "sketch_scene.py",
        doc,
        "--id=img1",
        "--layers=2,8",
        "--levels=2",
        "--strokes=8",
        "--quality=custom",
        "--seeds=1",
        "--iterations=2",
        "--window=false",
    )
    assert out.returncode == 0 and out.stderr == b"", out.stderr.decode()
    root = etree.fromstring(out.stdout)
    top = root.xpath(f"/svg:svg/svg:g[@inkscape:label='Scene sketch of img1{TAG}']", namespaces=SVG_NS)
    assert len(top) == 1
    assert_scene_layers(top[0], [2, 8], 2, background=True)  # the dialog splits by default (U2-Net + LaMa)
    # The photo spans x 25..85, y 15..75: every stroke ends at its edges.
    pts = curve_points(top[0])
    assert pts[:, 0].min() >= 25 - 1e-3 and pts[:, 0].max() <= 85 + 1e-3
    assert pts[:, 1].min() >= 15 - 1e-3 and pts[:, 1].max() <= 75 + 1e-3


PLACEMENT = r"""
import json, sys
sys.path[:0] = [sys.argv[1]]
import sketchabs, inkex
from sketchabs.placement import pixel_to_document
svg = inkex.load_svg(sys.argv[2]).getroot()
m = pixel_to_document(svg.getElementById("img1"), (500, 500))
print(json.dumps([list(m.apply_to_point(p)) for p in [(0, 0), (500, 0), (0, 500), (250, 250)]]))
"""


@pytest.mark.parametrize(
    "attrs, layer, expected",
    [
        ('preserveAspectRatio="none"', "", [(5, 10), (85, 10), (5, 70), (45, 40)]),
        ('preserveAspectRatio="xMinYMin meet"', "", [(5, 10), (65, 10), (5, 70), (35, 40)]),
        ('preserveAspectRatio="xMaxYMax meet"', "", [(25, 10), (85, 10), (25, 70), (55, 40)]),
        ('preserveAspectRatio="xMidYMid slice"', "", [(5, -0), (85, 0), (5, 80), (45, 40)]),
        ('transform="rotate(90)"', "", [(-10, 15), (-10, 75), (-70, 15), (-40, 45)]),
        ('transform="scale(2)"', "translate(1,2)", [(31, 22), (151, 22), (31, 142), (91, 82)]),
    ],
)
def test_placement_follows_image_geometry(ink, tmp_path, attrs, layer, expected):
    doc = embedded_svg(tmp_path / "doc.svg", [{"id": "img1", "attrs": attrs}], layer_transform=layer)
    out = subprocess.run(
        [INKSCAPE_PYTHON, "-c", PLACEMENT, str(ink["ext"]), str(doc)],
        capture_output=True,
        env={**ink["env"], "PYTHONPATH": ink["inkex"]},
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    np.testing.assert_allclose(json.loads(out.stdout), expected, atol=1e-6)


def test_linked_image_batch_and_current_layer_scope(ink, tmp_path):
    """A relative link to a TIFF (resolved against the document's folder), plus an embedded PNG: both
    get sketches."""
    Image.open(EXAMPLE).save(tmp_path / "photo.tif")
    doc = embedded_svg(tmp_path / "doc.svg", [{"id": "img1"}, {"id": "img2", "x": 100, "href": "photo.tif"}])
    out = run_script(ink, "sketch_object.py", doc, "--scope=layer", *FAST)
    assert out.returncode == 0 and out.stderr == b"", out.stderr.decode()
    _, tops = sketch_layers(out.stdout)
    names = sorted(t.get(f"{{{SVG_NS['inkscape']}}}label") for t in tops)
    assert names == ["Sketch of img1" + TAG, "Sketch of photo" + TAG]
    linked = next(t for t in tops if t.get(f"{{{SVG_NS['inkscape']}}}label") == "Sketch of photo" + TAG)
    assert path_points(linked)[:, 0].min() >= 100 + 10 + 10 - 1  # that image's box starts at x 100 (+ layer 10)


SIZES = r"""
import json, sys
sys.path[:0] = [sys.argv[1]]
from sketchabs.images import pixel_size
print(json.dumps({name: pixel_size(open(path, "rb").read()) for name, path in json.loads(sys.argv[2]).items()}))
"""


def tiff_header(order: str, kind: int, size: tuple[int, int]) -> bytes:
    """A TIFF header whose first directory holds width and height as SHORT (3) or LONG (4) values."""
    magic = b"MM\x00*" if order == ">" else b"II*\x00"
    entries = b"".join(
        struct.pack(order + "HHI", tag, kind, 1)
        + (struct.pack(order + "HH", value, 0) if kind == 3 else struct.pack(order + "I", value))
        for tag, value in zip((256, 257), size)
    )
    return magic + struct.pack(order + "IH", 8, 2) + entries + struct.pack(order + "I", 0)


def test_pixel_size_is_read_from_every_format_the_engine_takes(ink, tmp_path):
    """The extension reads sizes from headers (no Pillow in Inkscape's Python); check against Pillow."""
    photo, files = Image.open(EXAMPLE).convert("RGB").resize((37, 23)), {}
    for name, kwargs in {
        "png": {},
        "jpg": {},
        "gif": {},
        "bmp": {},
        "webp": {},
        "lossless.webp": {"lossless": True},
        "tif": {"compression": "tiff_lzw"},
    }.items():
        files[name] = tmp_path / f"photo.{name}"
        photo.save(files[name], **kwargs)
    files["be.tif"] = tmp_path / "photo.be.tif"  # 16-bit big-endian: a Motorola-order TIFF
    Image.frombytes("I;16B", (37, 23), bytes(37 * 23 * 2)).save(files["be.tif"])
    for order, kind in ((">", 3), ("<", 4)):  # the size field types Pillow does not write in these orders
        files[f"{order}{kind}.tif"] = tmp_path / f"header-{kind}.tif"
        files[f"{order}{kind}.tif"].write_bytes(tiff_header(order, kind, (37, 23)))
    files["not an image"] = tmp_path / "notes.txt"
    files["not an image"].write_text("hello")
    out = subprocess.run(
        [INKSCAPE_PYTHON, "-c", SIZES, str(ink["ext"]), json.dumps({k: str(v) for k, v in files.items()})],
        env={**ink["env"], "PYTHONPATH": ink["inkex"]},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    sizes = json.loads(out.stdout)
    assert sizes.pop("not an image") is None
    assert sizes == {name: [37, 23] for name in sizes}


MASK = r"""
import sys
sys.path[:0] = [sys.argv[1]]
import sketchabs, inkex
from sketchabs.mask import mask_png
from sketchabs.placement import pixel_to_document
svg = inkex.load_svg(sys.argv[2]).getroot()
image = svg.getElementById("img1")
sys.stdout.buffer.write(mask_png([svg.getElementById("m")], pixel_to_document(image, (500, 500)), (500, 500)))
"""


def test_selected_path_becomes_the_mask_in_image_pixels(ink, tmp_path):
    # Image 100 x 100 user units at (0, 0) showing 500 px: 5 px per unit. A rect at (20, 40) 30 x 20
    # in a group moved by (10, 0) covers pixels x 150..300, y 200..300.
    doc = embedded_svg(
        tmp_path / "doc.svg",
        [{"id": "img1", "x": 0, "y": 0, "w": 100, "h": 100}],
        layer_transform="",
        extra='<g transform="translate(10,0)"><rect id="m" x="20" y="40" width="30" height="20"/></g>',
    )
    out = subprocess.run(
        [INKSCAPE_PYTHON, "-c", MASK, str(ink["ext"]), str(doc)],
        capture_output=True,
        env={**ink["env"], "PYTHONPATH": ink["inkex"]},
        timeout=60,
    )
    assert out.returncode == 0, out.stderr.decode()
    mask = np.asarray(Image.open(io.BytesIO(out.stdout))) > 127
    assert mask.shape == (500, 500)
    ys, xs = np.nonzero(mask)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (150, 299, 200, 299)
    assert mask.sum() == 150 * 100


def test_mask_from_path_runs_end_to_end(ink, tmp_path):
    doc = embedded_svg(tmp_path / "doc.svg", [{"id": "img1"}], extra='<path id="m" d="M 30 20 L 60 20 L 60 60 Z"/>')
    out = run_script(ink, "sketch_object.py", doc, "--id=img1", "--id=m", "--mask=path", *FAST)
    assert out.returncode == 0 and out.stderr == b"", out.stderr.decode()
    assert len(sketch_layers(out.stdout)[1]) == 1


@pytest.mark.parametrize(
    "args, words",
    [
        ([], "Select one or more photos"),
        (["--id=img1", "--levels=0"], "Stroke counts must be between 1 and 1024, got [0].\n\nWhat to do: Change the"),
        (["--id=img1", "--levels=a,b"], "Levels must be stroke counts"),
        (["--id=img1", "--mask=path"], "only the photo is selected. Draw a path or shape over 'img1'"),
        (["--id=broken"], "damaged embedded picture"),
        (["--id=missing"], "cannot be read"),
    ],
)
def test_failures_abort_with_a_message_and_leave_the_document(ink, tmp_path, args, words):
    doc = embedded_svg(
        tmp_path / "doc.svg",
        [
            {"id": "img1"},
            {"id": "broken", "href": "data:image/png;base64,@@@"},
            {"id": "missing", "href": "nowhere/gone.png"},
        ],
    )
    out = run_script(ink, "sketch_object.py", doc, *FAST, *args)
    assert out.returncode != 0
    assert words in out.stderr.decode()
    assert "Traceback" not in out.stderr.decode()
    assert b"Sketch of" not in out.stdout


@pytest.mark.parametrize(
    "image, mask, words",
    [
        ({"href": "/dev/zero"}, False, "not a regular file"),
        ({"href": "FIFO"}, False, "not a regular file"),
        ({"href": png_header(65535, 65535)}, True, "too large"),
        ({"href": png_header(0, 0)}, True, "zero size"),
    ],
    ids=["dev-zero", "fifo", "huge-header-with-path-mask", "zero-header-with-path-mask"],
)
def test_hostile_images_abort_with_a_message(ink_1_2, tmp_path, image, mask, words):
    """Run with a 2 GiB address-space cap: an unbounded read or a mask at 65535^2 would fail the
    test, not take the machine's memory."""
    fifo = tmp_path / "photo.png"
    os.mkfifo(fifo)  # reading it waits for a writer that never comes
    image = {"id": "img1", **image, "href": str(fifo) if image["href"] == "FIFO" else image["href"]}
    doc = embedded_svg(tmp_path / "doc.svg", [image], extra='<path id="m" d="M 30 20 L 60 20 L 60 60 Z"/>')
    selection = ["--id=img1", *(["--id=m", "--mask=path"] if mask else [])]
    out = run_script(ink_1_2, "sketch_object.py", doc, *selection, *FAST, timeout=60, memory_limit=2 * 2**30)
    stderr = out.stderr.decode()
    assert out.returncode != 0 and words in stderr and "Traceback" not in stderr, stderr
    assert b"Sketch of" not in out.stdout


def test_a_long_label_is_cut_for_the_layer_and_the_job(ink_1_2, tmp_path):
    label = "holiday " * 80  # 640 characters
    doc = embedded_svg(tmp_path / "doc.svg", [{"id": "img1", "attrs": f'inkscape:label="{label}"'}])
    out = run_script(ink_1_2, "sketch_object.py", doc, "--id=img1", *FAST)
    assert out.returncode == 0 and out.stderr == b"", out.stderr.decode()
    title = sketch_layers(out.stdout)[1][0].get(f"{{{SVG_NS['inkscape']}}}label")
    assert title == "Sketch of " + label[:79] + "\u2026" + TAG


def test_engine_that_cannot_start_is_reported(ink_1_2, tmp_path):
    ext = tmp_path / "ext"
    shutil.copytree(ink_1_2["ext"], ext)
    (ext / "engine.json").write_text(json.dumps({"python": "/nonexistent/python", "models": "tiny-random"}))
    doc = embedded_svg(tmp_path / "doc.svg", [{"id": "img1"}])
    env = {
        **ink_1_2["env"],
        "SKETCH_ABSTRACTION_RUNTIME_DIR": str(tmp_path / "run-none"),
        "PYTHONPATH": ink_1_2["inkex"],
        "DOCUMENT_PATH": str(doc),
    }
    out = subprocess.run(
        [INKSCAPE_PYTHON, "sketch_object.py", "--id=img1", *FAST, str(doc)],
        cwd=ext,
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert out.returncode != 0
    stderr = out.stderr.decode()
    assert "The engine's Python (/nonexistent/python) is missing" in stderr and "install.py" in stderr, stderr


def test_submit_and_return_then_insert_finished(ink, tmp_path):
    doc = embedded_svg(tmp_path / "doc.svg", [{"id": "img1"}])
    out = run_script(ink, "sketch_object.py", doc, "--id=img1", *FAST[:-1], "--detach=true")
    assert "Insert Finished Sketches" in out.stderr.decode() and b"Sketch of" not in out.stdout
    deadline = time.monotonic() + 120
    while True:
        out = run_script(ink, "sketch_insert.py", doc)
        if out.returncode == 0 or time.monotonic() > deadline:
            break
        assert "Not finished yet" in out.stderr.decode(), out.stderr.decode()
        time.sleep(0.5)
    assert out.returncode == 0 and out.stderr == b"", out.stderr.decode()
    assert levels(sketch_layers(out.stdout)[1][0]) == [("6 strokes", 6, False), ("3 strokes", 3, True)]
    again = run_script(ink, "sketch_insert.py", doc)  # inserted once: nothing is owed any more
    assert again.returncode != 0 and "No sketches are waiting" in again.stderr.decode()


@pytest.mark.parametrize("how", ["stop", "keep", "close"])
def test_progress_window_shows_the_sketch_and_stops_or_keeps_the_job(ink_1_2, tmp_path, how):
    """The real GTK window under Xvfb, driven mid-job: "Stop the sketch" cancels the job in the
    engine; "Keep it running in the background" (or closing the window) leaves it to the engine,
    says so in a window of ours (nothing on stderr), and Insert Finished Sketches brings it in."""
    needs_gtk()
    doc, record = embedded_svg(tmp_path / "doc.svg", [{"id": "img1"}]), tmp_path / "window.json"
    args = ["--id=img1", "--levels=6", "--quality=custom", "--seeds=1", "--iterations=400", "--window=true"]
    env = window_env(ink_1_2, doc, tmp_path)
    out = under_xvfb(WINDOW_DRIVER, how, str(record), *args, str(doc), cwd=ink_1_2["ext"], env=env)
    assert record.exists(), f"the window never showed optimisation progress: {out.stderr.decode()}"
    shown = json.loads(record.read_text())
    assert re.fullmatch(r"optimise: \d+ / 400", shown["bar"]) and 0 < shown["fraction"] <= 1, shown
    assert f"Sketch of img1{TAG} (1 of 1)" in shown["labels"], shown
    assert any(re.search(r"loss \S+ · at most \d+ (s|min) left", text) for text in shown["labels"]), shown
    assert "Running with test models: the strokes mean nothing." in shown["labels"]
    assert max(shown["preview"]) == 256, "the live preview shows the sketch so far"
    assert shown["dark"] is True, "the window follows Inkscape's dark theme preference"
    assert out.returncode != 0 and b"Sketch of" not in out.stdout, "the document is left unchanged"
    if how == "stop":
        assert out.returncode == 251 and out.stderr == b"", "a stop is not an error: no dialog, nothing to say"
        nothing = run_script(ink_1_2, "sketch_insert.py", doc)
        assert nothing.returncode != 0 and "No sketches are waiting" in nothing.stderr.decode()
        return
    assert out.stderr == b"", "information comes in the extension's window, not Inkscape's error dialog"
    assert any("1 sketch keeps running in the background" in text for text in shown["told"]), shown
    deadline = time.monotonic() + 120
    while (inserted := run_script(ink_1_2, "sketch_insert.py", doc)).returncode != 0 and time.monotonic() < deadline:
        time.sleep(0.5)  # the engine finishes the job the user left to it
    assert inserted.returncode == 0, inserted.stderr.decode()
    assert levels(sketch_layers(inserted.stdout)[1][0]) == [("6 strokes", 6, False)]


def test_scene_sketchs_window_shows_the_scene_taking_shape_and_stops_it(ink_1_2, tmp_path):
    """Scene Sketch's window: the live picture of the row being optimised, its time left as an
    estimate ("about"), and "Stop the sketch" cancels the scene in the engine."""
    needs_gtk()
    doc, record = embedded_svg(tmp_path / "doc.svg", [{"id": "img1"}]), tmp_path / "window.json"
    args = ["--id=img1", "--layers=2", "--levels=2", "--strokes=8", "--quality=custom", "--seeds=1"]
    args += ["--iterations=400", "--mask=none", "--window=true"]
    env = {**window_env(ink_1_2, doc, tmp_path), "EFFECT": "sketch_scene:SceneSketch"}
    out = under_xvfb(WINDOW_DRIVER, "stop", str(record), *args, str(doc), cwd=ink_1_2["ext"], env=env)
    assert record.exists(), f"the window never showed optimisation progress: {out.stderr.decode()}"
    shown = json.loads(record.read_text())
    assert max(shown["preview"]) == 256, "the live preview shows the scene so far"
    assert any(re.search(r"loss \S+ · about \d+ (s|min) left", text) for text in shown["labels"]), shown
    assert out.returncode == 251 and out.stderr == b"", "a stop is not an error: no dialog, nothing to say"
    assert b"Scene sketch of" not in out.stdout


def test_engine_status_reports_the_engine(ink_1_2, tmp_path):
    doc = embedded_svg(tmp_path / "doc.svg", [{"id": "img1"}])
    run_script(ink_1_2, "sketch_object.py", doc, "--id=img1", *FAST)  # make sure it runs
    out = run_script(ink_1_2, "sketch_status.py", doc)
    assert out.returncode == 251 and out.stdout == b"", "information only: the document is not replaced"
    assert "running" in out.stderr.decode() and "tiny-random" in out.stderr.decode()


RECORDER = r"""
import os, sys, time
import sketchabs
from sketchabs import engine_link

tag, count = sys.argv[1], int(sys.argv[2])
for i in range(count):  # one effect run after another, as a window records its jobs
    job_id = f"{tag}{i:031x}"
    engine_link.remember([engine_link.PendingJob(job_id, f"img{i}", "doc.svg", "t", (4, 4), time.time())])
"""


def test_two_windows_recording_jobs_at_once_lose_none(ink_1_2, tmp_path):
    """Two Inkscape windows remembering jobs at the same moment: every job can be inserted later."""
    env = {**ink_1_2["env"], "SKETCH_ABSTRACTION_DATA_DIR": str(tmp_path / "data")}
    env["PYTHONPATH"] = f"{ink_1_2['ext']}:{ink_1_2['inkex']}"
    windows = [
        subprocess.Popen([INKSCAPE_PYTHON, "-c", RECORDER, tag, "300"], cwd=ink_1_2["ext"], env=env)
        for tag in ("a", "b")
    ]
    assert [w.wait(timeout=300) for w in windows] == [0, 0]
    check = (
        "import sketchabs; from sketchabs import engine_link; "
        "print(len(engine_link.owed_to('doc.svg', {f'img{i}' for i in range(300)})))"
    )
    owed = subprocess.run([INKSCAPE_PYTHON, "-c", check], cwd=ink_1_2["ext"], env=env, capture_output=True, text=True)
    assert owed.stdout.strip() == "600", owed.stderr
    private = [p for p in (tmp_path / "data").rglob("*") if p.stat().st_mode & 0o077]
    assert private == [], "records of the user's documents are 0600, in 0700 folders"


def test_inx_files_are_valid_and_match_the_scripts(ink):
    rng = etree.RelaxNG(etree.parse(f"{SYSTEM_EXTENSIONS}/inkscape.extension.rng"))
    for inx in sorted(ink["ext"].glob("*.inx")):
        tree = etree.parse(str(inx))
        assert rng.validate(tree), (inx.name, rng.error_log.last_error)
        ns = {"i": "http://www.inkscape.org/namespace/inkscape/extension"}
        assert "_" not in tree.findtext("i:id", namespaces=ns)
        script = tree.findtext(".//i:command", namespaces=ns)
        params = [p.get("name") for p in tree.iterfind(".//i:param", namespaces=ns)]
        check = (
            "import sys, importlib.util\nsys.argv=['x']\n"
            f"spec = importlib.util.spec_from_file_location('m', '{ink['ext'] / script}')\n"
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
            "import inkex\ncls = [c for c in vars(m).values() if isinstance(c, type) and "
            "issubclass(c, inkex.EffectExtension) and c.__module__ == 'm'][0]\n"
            "print(' '.join(a.dest for a in cls().arg_parser._actions))"
        )
        out = subprocess.run(
            [INKSCAPE_PYTHON, "-c", check],
            cwd=ink["ext"],
            capture_output=True,
            text=True,
            env={**ink["env"], "PYTHONPATH": f"{ink['ext']}:{ink['inkex']}"},
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        dests = set(out.stdout.split())
        assert set(params) <= dests, (inx.name, set(params) - dests)


def test_in_real_inkscape_headless(setup, tmp_path):
    """Inkscape 1.2 itself runs the effect (.noprefs, parameters from the profile's preferences)."""
    prefs = {"levels": "6,3", "quality": "custom", "seeds": "1", "iterations": "10"}
    doc = embedded_svg(tmp_path / "doc.svg", [{"id": "img1"}])
    result, png = tmp_path / "result.svg", tmp_path / "result.png"
    actions = (
        f"select-by-id:img1;{OBJECT}.noprefs;export-filename:{result};export-do;"
        f"export-filename:{png};export-type:png;export-dpi:96;export-do"
    )
    started = time.monotonic()
    inkscape_runs(setup, OBJECT, prefs, actions, doc)
    seconds = time.monotonic() - started
    _, tops = sketch_layers(result.read_bytes())
    assert len(tops) == 1 and levels(tops[0]) == [("6 strokes", 6, False), ("3 strokes", 3, True)]
    pts = path_points(tops[0])
    assert pts[:, 0].min() >= 24 and pts[:, 0].max() <= 86 and pts[:, 1].min() >= 14 and pts[:, 1].max() <= 76
    assert Image.open(png).size[0] > 100
    print(f"effect inside Inkscape, warm engine: {seconds:.1f} s including Inkscape's start")


def test_scene_sketch_in_real_inkscape_lands_as_nested_layers(setup, tmp_path):
    """Inkscape 1.2 itself runs Scene Sketch on a photo whose object is a path drawn over it: the
    matrix's nested layers arrive whole, one cell drawn, and no stroke leaves the photo."""
    prefs = {"layers": "2,8", "levels": "2", "strokes": "8", "quality": "custom", "seeds": "1", "iterations": "2"}
    prefs.update(mask="path", window="false")
    # The photo shows at x 25..85, y 15..75; the object is a triangle drawn over it.
    doc = embedded_svg(tmp_path / "doc.svg", [{"id": "img1"}], extra='<path id="m" d="M 40 25 L 70 25 L 55 65 Z"/>')
    result = tmp_path / "result.svg"
    actions = f"select-by-id:img1,m;{SCENE}.noprefs;export-filename:{result};export-do"
    inkscape_runs(setup, SCENE, prefs, actions, doc, timeout_s=200)
    root = etree.fromstring(result.read_bytes())
    top = root.xpath(f"/svg:svg/svg:g[@inkscape:label='Scene sketch of img1{TAG}']", namespaces=SVG_NS)
    assert len(top) == 1, "the effect ran inside Inkscape"
    assert_scene_layers(top[0], [2, 8], 2, background=True)
    ids = [e.get("id") for e in root.iter() if e.get("id")]
    assert len(ids) == len(set(ids))
    pts = curve_points(top[0])
    assert pts[:, 0].min() >= 25 - 1e-3 and pts[:, 0].max() <= 85 + 1e-3
    assert pts[:, 1].min() >= 15 - 1e-3 and pts[:, 1].max() <= 75 + 1e-3


def test_install_is_idempotent_and_uninstalls(tmp_path):
    profile = tmp_path / "profile"
    command = [sys.executable, str(ROOT / "install.py"), "--skip-engine", "--profile", str(profile)]
    for _ in range(2):
        out = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and "Installed the Inkscape extension" in out.stdout, out.stderr
    ext = profile / "extensions" / "sketch-abstraction"
    assert sorted(p.name for p in ext.glob("*.inx")) == [
        "sketch_animate.inx",
        "sketch_insert.inx",
        "sketch_object.inx",
        "sketch_refine.inx",
        "sketch_scene.inx",
        "sketch_status.inx",
        "sketch_stop.inx",
    ]
    assert json.loads((ext / "engine.json").read_text())["models"] == "openai", "real models unless told"
    # The light package, whole and alone: no engine code (which would need torch) travels with it.
    vendored = sorted(p.name for p in (ext / "vendor").iterdir() if not p.name.endswith(".dist-info"))
    assert vendored in (["bridge", "platformdirs"], ["bridge", "platformdirs", "pyzmq.libs", "zmq"]), vendored
    assert sorted(p.name for p in (ext / "vendor" / "bridge").glob("*.py")) == sorted(
        p.name for p in (ROOT / "bridge").glob("*.py")
    )
    assert [p.name for p in (profile / "extensions").iterdir()] == ["sketch-abstraction"], "no leftovers"
    out = subprocess.run([*command, "--uninstall"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and not ext.exists()


# Extensions > Sketch Abstraction as the designer sees it: the two everyday effects first, the rest in
# a nested "Tools" submenu. Inkscape (1.2 and 1.4 alike) sorts a submenu's entries and nested submenus
# together by name, so a nested submenu must be named to sort after "Scene Sketch" ("More" would come
# first). Read from the real 1.2 window below; 1.4.0 was read the same way in a Debian 13 chroot.
MENU = [
    "Object Sketch",
    "Scene Sketch",
    ("Tools", ["Animate Sketch", "Engine Status", "Insert Finished Sketches", "Refine Sketch", "Stop Sketches"]),
]
INX = {"i": "http://www.inkscape.org/namespace/inkscape/extension"}


def menu_from_inx(folder: Path) -> list:
    """Extensions > Sketch Abstraction as Inkscape builds it from the .inx files in `folder`: each
    effect under its `<effects-menu>` submenu path, entries and nested submenus sorted by name."""
    tree: dict = {}
    for inx in folder.glob("*.inx"):
        root = etree.parse(str(inx)).getroot()
        level, submenu = tree, root.find("i:effect/i:effects-menu/i:submenu", INX)
        while submenu is not None:
            level = level.setdefault(submenu.get("name"), {})
            submenu = submenu.find("i:submenu", INX)
        level[root.findtext("i:name", namespaces=INX)] = None

    def ordered(level: dict) -> list:
        return [name if level[name] is None else (name, ordered(level[name])) for name in sorted(level)]

    return ordered(tree["Sketch Abstraction"])


def test_menu_lists_object_and_scene_sketch_first_and_messages_name_real_entries():
    """The order Inkscape shows from the .inx files; every menu path the extension's messages tell
    the designer to choose (e.g. "... > Tools > Stop Sketches") is an entry of that menu."""
    import importlib.util

    assert menu_from_inx(ROOT / "inkscape_ext") == MENU
    spec = importlib.util.spec_from_file_location("ext_messages", ROOT / "inkscape_ext" / "sketchabs" / "messages.py")
    assert spec is not None and spec.loader is not None
    messages = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(messages)
    entries = {f"Extensions > Sketch Abstraction > {name}" for name in MENU if isinstance(name, str)}
    entries |= {f"Extensions > Sketch Abstraction > {sub} > {name}" for sub, names in MENU[2:] for name in names}
    for path in (messages.INSERT_FINISHED, messages.ENGINE_STATUS, messages.STOP_SKETCHES):
        assert path in entries, path


# Run in Inkscape's Python next to Inkscape's window: the window's menus as the accessibility bus
# (AT-SPI, what a screen reader reads) shows them, through D-Bus with Gio alone. Prints the submenu
# named argv[1] as JSON ([label, ...], a nested submenu as [label, [...]]), once Inkscape shows it.
MENU_READER = r"""
import json, sys, time
from gi.repository import Gio, GLib

ACC, LEAVES = "org.a11y.atspi.Accessible", ("menu item", "label", "icon", "separator", "push button",
                                            "toggle button", "check box", "spin button", "text")

def call(bus, node, interface, method, args, reply):
    return bus.call_sync(node[0], node[1], interface, method, args, GLib.VariantType(reply), 0, 10000, None).unpack()

def prop(bus, node, name):
    return call(bus, node, "org.freedesktop.DBus.Properties", "Get", GLib.Variant("(ss)", (ACC, name)), "(v)")[0]

def children(bus, node):
    return [call(bus, node, ACC, "GetChildAtIndex", GLib.Variant("(i)", (i,)), "((so))")[0]
            for i in range(prop(bus, node, "ChildCount"))]

def role(bus, node):
    return call(bus, node, ACC, "GetRoleName", None, "(s)")[0]

def find(bus, top, wanted):
    level = [top]
    while level:
        below = []
        for node in level:
            for child in children(bus, node):
                kind = role(bus, child)
                if kind == "menu" and prop(bus, child, "Name") == wanted:
                    return child
                if kind not in LEAVES:
                    below.append(child)
        level = below
    return None

def listed(bus, menu):
    return [[prop(bus, c, "Name"), listed(bus, c)] if role(bus, c) == "menu" else prop(bus, c, "Name")
            for c in children(bus, menu)]

try:
    session = Gio.bus_get_sync(Gio.BusType.SESSION)
    address = call(session, ("org.a11y.Bus", "/org/a11y/bus"), "org.a11y.Bus", "GetAddress", None, "(s)")[0]
    bus = Gio.DBusConnection.new_for_address_sync(address, Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT
                                                  | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION, None, None)
except GLib.Error as err:
    print(f"no accessibility bus: {err.message}")
    sys.exit(3)
deadline = time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    time.sleep(2)
    try:
        apps = [a for a in children(bus, ("org.a11y.atspi.Registry", "/org/a11y/atspi/accessible/root"))
                if "inkscape" in prop(bus, a, "Name").lower()]
        menu = next((m for m in (find(bus, a, sys.argv[1]) for a in apps) if m is not None), None)
    except GLib.Error:
        continue  # the window is still being built
    if menu is not None:
        time.sleep(1)
        print(json.dumps(listed(bus, menu)))
        sys.exit(0)
print("Inkscape showed no such menu in time")
sys.exit(4)
"""


def test_real_inkscape_menu_shows_object_and_scene_sketch_first(setup, tmp_path):
    """Inkscape 1.2's own window under Xvfb, the extension as install.py installed it: its
    Extensions > Sketch Abstraction menu, read through the accessibility bus, lists Object Sketch and
    Scene Sketch first and the rest under Tools (menu entries of effects with a dialog end in "...")."""
    for tool in ("xvfb-run", "dbus-run-session"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (.ci/run installs xvfb and dbus)")
    doc = tmp_path / "doc.svg"
    doc.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100"/>')
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    profile = tmp_path / "profile"  # a copy: the window saves its preferences into its profile
    shutil.copytree(setup["base"] / "profile", profile)
    env = {k: v for k, v in setup["env"].items() if k not in ("NO_AT_BRIDGE", "DBUS_SESSION_BUS_ADDRESS")}
    script = (
        'inkscape "$1" >/dev/null 2>&1 & ink=$!; '
        f'{INKSCAPE_PYTHON} -c "$2" "Sketch Abstraction" 150; said=$?; kill $ink; wait $ink; exit $said'
    )
    out = subprocess.run(
        [
            *("timeout", "-k", "5", "240", "dbus-run-session", "--", *xvfb_run(tmp_path)),
            *("-s", "-screen 0 1280x900x24", "sh", "-c", script, "sh", str(doc), MENU_READER),
        ],
        env={**env, "XDG_RUNTIME_DIR": str(runtime), "INKSCAPE_PROFILE_DIR": str(profile)},
        capture_output=True,
        text=True,
        timeout=290,
    )
    if out.returncode == 3:
        pytest.skip(f"the accessibility bus the menu is read through is missing (install at-spi2-core): {out.stdout}")
    assert out.returncode == 0, (out.stdout, out.stderr[-2000:])
    shown = json.loads(out.stdout.strip().splitlines()[-1])

    def plain(entries: list) -> list:
        return [e.removesuffix("...") if isinstance(e, str) else (e[0], plain(e[1])) for e in entries]

    assert plain(shown) == MENU, shown
    assert shown[:2] == ["Object Sketch...", "Scene Sketch..."]
