"""`sketch-abstraction animate`: strokes drawn one by one in importance order, as an animated SVG and
a GIF whose last frame is the sketch itself (checked against cairosvg's picture of the static SVG)."""

from __future__ import annotations

import io
import re

import cairosvg
import numpy as np
import pytest
from lxml import etree
from PIL import Image

from engine.cli import main
from engine.strokes import Sketch, StrokeLayer
from engine.svg import sketch_to_svg
from tests.harness.paths import ANIMAL

NS = {"svg": "http://www.w3.org/2000/svg", "inkscape": "http://www.inkscape.org/namespaces/inkscape"}
# Four strokes, one per quadrant of a 200 x 200 sketch (top left, top right, bottom left, bottom right).
QUADRANT_STROKES = np.array(
    [
        [[20, 20], [50, 60], [70, 30], [90, 80]],
        [[110, 20], [140, 60], [160, 30], [190, 80]],
        [[20, 120], [50, 160], [70, 130], [90, 180]],
        [[110, 120], [120, 190], [180, 110], [190, 185]],
    ],
    dtype=float,
)
IMPORTANCE = (1.0, 4.0, 2.0, 3.0)  # so the drawing order is 1, 3, 2, 0
ORDER = [1, 3, 2, 0]


def write_sketch(path, layers, photo_href=None):
    path.write_bytes(sketch_to_svg(Sketch(200, 200, tuple(layers)), image_href=photo_href))
    return path


def quadrant_layer(**kw):
    return StrokeLayer("4 strokes", QUADRANT_STROKES, width=4.0, importance=IMPORTANCE, **kw)


def gif_frames(path) -> list[np.ndarray]:
    image = Image.open(path)
    frames = []
    for i in range(image.n_frames):
        image.seek(i)
        frames.append(np.asarray(image.convert("L"), dtype=float) / 255)
    return frames


def quadrants_with_ink(frame: np.ndarray) -> set[int]:
    ink = 1 - frame
    halves = [ink[:100, :100], ink[:100, 100:], ink[100:, :100], ink[100:, 100:]]
    return {i for i, part in enumerate(halves) if part.sum() > 20}


def static_picture(svg: bytes) -> np.ndarray:
    png = cairosvg.svg2png(bytestring=svg, background_color="white")
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float) / 255


def test_gif_draws_in_importance_order_and_ends_on_the_sketch(tmp_path):
    svg = write_sketch(tmp_path / "s.svg", [quadrant_layer()])
    gif = tmp_path / "s.gif"
    assert main(["animate", str(svg), "-o", str(gif), "--duration", "2", "--fps", "6", "-q"]) == 0
    frames = gif_frames(gif)
    assert len(frames) >= len(QUADRANT_STROKES) + 1
    appeared: list[int] = []
    for frame in frames:
        appeared += sorted(quadrants_with_ink(frame) - set(appeared))
    assert appeared == ORDER
    assert not quadrants_with_ink(frames[0])  # it starts blank
    last, sketch = frames[-1], static_picture(svg.read_bytes())
    assert last.shape == sketch.shape
    assert np.abs(last - sketch).mean() < 0.01
    assert ((last < 0.5) == (sketch < 0.5)).mean() > 0.995


def test_animated_svg_keeps_every_stroke_a_path_timed_by_importance(tmp_path):
    svg = write_sketch(tmp_path / "s.svg", [quadrant_layer()])
    out = tmp_path / "anim.svg"
    assert main(["animate", str(svg), "-o", str(out), "--duration", "4", "-q"]) == 0
    root = etree.parse(str(out)).getroot()
    paths = root.findall(".//svg:path", NS)
    assert len(paths) == 4 and all(p.get("class") == "sketchabs-draw" and p.get("pathLength") == "1" for p in paths)
    starts = [float(re.search(r"animation-delay:([\d.]+)s", p.get("style")).group(1)) for p in paths]
    seconds = [float(re.search(r"animation-duration:([\d.]+)s", p.get("style")).group(1)) for p in paths]
    assert starts == sorted(starts) and starts[0] == 0
    assert sum(seconds) == pytest.approx(4.0, abs=0.01)
    firsts = [tuple(map(float, p.get("d").split()[1:3])) for p in paths]
    assert firsts == [tuple(QUADRANT_STROKES[i, 0]) for i in ORDER]
    assert "@keyframes sketchabs-draw" in root.find("svg:style", NS).text
    # --pace even: every stroke the same time; the default gives longer strokes more.
    assert main(["animate", str(svg), "-o", str(out), "--duration", "4", "--pace", "even", "-q"]) == 0
    even = etree.parse(str(out)).getroot().findall(".//svg:path", NS)
    assert {re.search(r"animation-duration:([\d.]+)s", p.get("style")).group(1) for p in even} == {"1.000"}
    assert max(seconds) > 1.05 * min(seconds)


def test_ink_strokes_are_revealed_through_masks_and_the_last_frame_is_the_sketch(tmp_path):
    widths = np.array([[1.0, 6.0, 6.0, 1.0]] * 4)
    svg = write_sketch(tmp_path / "ink.svg", [quadrant_layer(ink=widths)])
    out, gif = tmp_path / "ink-anim.svg", tmp_path / "ink.gif"
    assert main(["animate", str(svg), "-o", str(out), "-o", str(gif), "--duration", "1", "--fps", "4", "-q"]) == 0
    root = etree.parse(str(out)).getroot()
    inks = [p for p in root.iter(f"{{{NS['svg']}}}path") if p.get("mask")]
    assert len(inks) == 4
    assert all(p.get(f"{{{NS['inkscape']}}}original-d") for p in inks)  # still PowerStroke paths
    assert len(root.findall(".//svg:mask", NS)) == 4 and root.find(".//inkscape:path-effect", NS) is not None
    last, sketch = gif_frames(gif)[-1], static_picture(svg.read_bytes())
    assert np.abs(last - sketch).mean() < 0.01


def test_scene_object_strokes_first_or_column_by_column(tmp_path):
    def cell(label, importance_object, importance_background, shift):
        strokes = QUADRANT_STROKES[:2] * [1, 0.5] + [0, shift]
        return StrokeLayer(
            label,
            sublayers=(
                StrokeLayer("Background", strokes[:1], importance=(importance_background,)),
                StrokeLayer("Object", strokes[1:], importance=(importance_object,)),
            ),
        )

    # Two fidelity columns, each one cell: the background strokes rank higher than the object's.
    svg = write_sketch(tmp_path / "scene.svg", [cell("layer 2", 1.0, 9.0, 0), cell("layer 8", 2.0, 8.0, 100)])

    def order(*extra):
        out = tmp_path / "scene-anim.svg"
        assert main(["animate", str(svg), "-o", str(out), "-q", *extra]) == 0
        paths = etree.parse(str(out)).getroot().findall(".//svg:path", NS)
        return [tuple(map(float, p.get("d").split()[1:3])) for p in paths]

    bg1, ob1 = (20.0, 10.0), (110.0, 10.0)
    bg2, ob2 = (20.0, 110.0), (110.0, 110.0)
    assert order() == [ob2, ob1, bg1, bg2]  # objects first, then by importance
    assert order("--order", "layers") == [ob1, bg1, ob2, bg2]  # column by column
    assert order("--layer", "layer 8") == [ob2, bg2]


def test_photo_background_and_clear_errors(tmp_path, capsys):
    photo = tmp_path / "animal.png"
    photo.write_bytes(ANIMAL.read_bytes())
    svg = write_sketch(tmp_path / "s.svg", [quadrant_layer()], photo_href="animal.png")
    gif, out = tmp_path / "p.gif", tmp_path / "sub" / "p.svg"
    out.parent.mkdir()
    assert main(["animate", str(svg), "-o", str(gif), "-o", str(out), "--background", "photo", "--fps", "2", "-q"]) == 0
    assert gif_frames(gif)[0].std() > 0.01  # the photo is there before any stroke
    image = etree.parse(str(out)).getroot().find(".//svg:image", NS)
    assert image.get("{http://www.w3.org/1999/xlink}href") == "../animal.png"

    bad = [
        (["--layer", "nope"], "no layer named 'nope'"),
        (["-o", str(tmp_path / "x.png")], "unknown format .png"),
    ]
    plain = write_sketch(tmp_path / "plain.svg", [quadrant_layer()])
    bad.append((["--background", "photo", "-o", str(tmp_path / "y.gif")], "holds no photo"))
    for extra, message in bad:
        assert main(["animate", str(plain), *extra]) != 0
        assert message in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "y.gif").exists()
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        assert main(["animate", str(plain), "-o", str(tmp_path / "v.mp4")]) != 0
        assert "imageio-ffmpeg" in capsys.readouterr().err and not (tmp_path / "v.mp4").exists()


def test_mp4_with_the_video_extra(tmp_path):
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="the video extra is not installed")
    svg = write_sketch(tmp_path / "s.svg", [quadrant_layer()])
    mp4 = tmp_path / "s.mp4"
    args = ["--duration", "2", "--fps", "5", "--hold", "1"]
    assert main(["animate", str(svg), "-o", str(mp4), *args, "-q"]) == 0
    reader = imageio_ffmpeg.read_frames(str(mp4))
    meta = next(reader)
    frames = [np.frombuffer(f, np.uint8).reshape(meta["size"][1], meta["size"][0], 3) for f in reader]
    assert meta["size"] == (200, 200) and len(frames) >= 5 * (2 + 1)
    last = frames[-1].mean(-1) / 255
    assert np.abs(last - static_picture(svg.read_bytes())).mean() < 0.03  # lossy H.264
