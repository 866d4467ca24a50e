"""engine.svg: Inkscape SVG out, the same sketch back in (read as `refine` and the Inkscape extension read
it: tests/sketch_svg.py on bridge.sketchlayer), and what a real SVG renderer draws. Files a user hands
in are refused by that one reader (engine.cli.sketch_file.read_sketch) when they are not sketches."""

import io
import re

import numpy as np
import pytest
from lxml import etree

from bridge.errors import InputError
from engine.cli.sketch_file import read_sketch
from engine.strokes import Sketch, StrokeLayer
from engine.svg import INKSCAPE_NS, SVG_NS, XLINK_NS, sketch_to_svg, write_svg
from tests.sketch_svg import svg_to_sketch

NS = {"svg": SVG_NS, "inkscape": INKSCAPE_NS}
LABEL = f"{{{INKSCAPE_NS}}}label"
HEADER = (
    f'<svg xmlns="{SVG_NS}" xmlns:inkscape="{INKSCAPE_NS}" width="50" height="40" '
    'viewBox="0 0 50 40"><g inkscape:groupmode="layer" inkscape:label="edited">'
)


def strokes_in(layer) -> int:
    """Strokes in a StrokeLayer and all its sublayers."""
    return len(layer.points) + sum(strokes_in(sub) for sub in layer.sublayers)


def random_sketch(seed: int = 0) -> Sketch:
    """Every feature at once: k = 4, 3, 2, nesting, hidden layers, styles, repeated labels."""
    rng = np.random.default_rng(seed)

    def layer(label, n, k, **kw):
        # Some control points fall outside the 320 x 240 canvas, as optimised strokes do.
        return StrokeLayer(label, rng.uniform(-30, 350, (n, k, 2)), **kw)

    return Sketch(
        320,
        240,
        (
            layer("16 strokes", 16, 4),
            layer("Quadratic", 5, 3, width=1.25, color="#ff8800", visible=False),
            # A layer without paths keeps no style of its own: it reads back as width 3, black.
            layer(
                "Cell 0/1",
                0,
                4,
                sublayers=(
                    layer("Object", 4, 4, width=4.5, color="#0000ff"),
                    layer("Background", 3, 2, visible=False, sublayers=(layer("Detail", 2, 3),)),
                ),
            ),
            layer("16 strokes", 2, 2),
        ),
    )


def parse(sketch: Sketch, **kw) -> etree._Element:
    return etree.fromstring(sketch_to_svg(sketch, **kw))


def layer_groups(element: etree._Element) -> list[etree._Element]:
    return element.findall("svg:g[@inkscape:groupmode='layer']", NS)


def style_of(element: etree._Element) -> dict[str, str]:
    return dict(item.split(":", 1) for item in element.get("style").split(";"))


def assert_same_layers(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert (a.label, a.visible, a.width, a.color) == (b.label, b.visible, b.width, b.color)
        assert a.points.shape == b.points.shape
        np.testing.assert_allclose(a.points, b.points, atol=1e-3)
        assert_same_layers(a.sublayers, b.sublayers)


def curve(points: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Points at parameters `t` on the Bézier curve with control points `points` (de Casteljau)."""
    p = np.broadcast_to(points, (len(t), *points.shape))
    while p.shape[1] > 1:
        p = (1 - t[:, None, None]) * p[:, :-1] + t[:, None, None] * p[:, 1:]
    return p[:, 0]


# --- round trip --------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_round_trip_keeps_points_labels_styles_and_structure(seed):
    sketch = random_sketch(seed)
    back = svg_to_sketch(sketch_to_svg(sketch))
    assert (back.width, back.height) == (sketch.width, sketch.height)
    assert_same_layers(back.layers, sketch.layers)


def test_source_image_layer_is_skipped_when_reading_back():
    sketch = random_sketch()
    back = svg_to_sketch(sketch_to_svg(sketch, image_href="photo.png"))
    assert_same_layers(back.layers, sketch.layers)


# --- the document ------------------------------------------------------------------------------


def test_document_is_svg_in_source_image_pixels():
    data = sketch_to_svg(random_sketch())
    assert data.startswith(b"<?xml") and b"encoding='UTF-8'" in data.splitlines()[0]
    root = etree.fromstring(data)
    assert root.tag == f"{{{SVG_NS}}}svg" and root.get("version") == "1.1"
    size = root.get("width"), root.get("height"), root.get("viewBox")
    assert size == ("320", "240", "0 0 320 240")
    assert {"inkscape", "sodipodi", "xlink"} <= set(root.nsmap)


def test_every_layer_is_an_inkscape_layer_with_a_unique_xml_safe_id():
    root = parse(random_sketch())
    top = layer_groups(root)
    assert [g.get(LABEL) for g in top] == ["16 strokes", "Quadratic", "Cell 0/1", "16 strokes"]
    assert [style_of(g)["display"] for g in top] == ["inline", "none", "inline", "inline"]
    # Sublayers nest inside their layer, after its own paths.
    cell = top[2]
    assert [g.get(LABEL) for g in layer_groups(cell)] == ["Object", "Background"]
    assert [g.get(LABEL) for g in layer_groups(layer_groups(cell)[1])] == ["Detail"]
    ids = [g.get("id") for g in root.iter(f"{{{SVG_NS}}}g")]
    assert len(ids) == len(set(ids)) == 7
    assert all(re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]*", i) for i in ids)
    assert ids[0] == "layer-16-strokes" and ids[-1] == "layer-16-strokes-2"


def test_a_layer_key_names_its_id_and_reads_back():
    """Scene cells are named by key (fidelity-8-simplicity-3), not by their changing labels."""
    cell = StrokeLayer("Simplicity 3/8 - 21 strokes", key="fidelity-8-simplicity-3")
    sketch = Sketch(10, 10, (cell, cell, StrokeLayer("9 strokes", key="9")))
    root = parse(sketch)
    ids = [g.get("id") for g in layer_groups(root)]
    assert ids == ["fidelity-8-simplicity-3", "fidelity-8-simplicity-3-2", "layer-9"], "unique and XML-safe"
    assert [layer.key for layer in svg_to_sketch(sketch_to_svg(sketch)).layers] == ids


def test_one_path_per_stroke_with_the_layer_style():
    sketch = random_sketch()
    root = parse(sketch)
    quadratic = layer_groups(root)[1]
    paths = quadratic.findall("svg:path", NS)
    assert len(paths) == 5
    for path in paths:
        assert style_of(path) == {
            "fill": "none",
            "stroke": "#ff8800",
            "stroke-width": "1.25",
            "stroke-linecap": "round",
            "stroke-linejoin": "round",
            "stroke-opacity": "1",
        }
    strokes = sum(strokes_in(layer) for layer in sketch.layers)
    assert len(root.findall(".//svg:path", NS)) == strokes
    # A layer's own paths come before its sublayers.
    cell_object = layer_groups(layer_groups(root)[2])[0]
    assert [etree.QName(c).localname for c in cell_object] == ["path"] * 4


def test_path_data_per_stroke_kind_and_number_format():
    layers = (
        StrokeLayer("c", np.array([[[0.5, -0.0001], [1.23456, 2.0], [-3.0, 4.1], [400.0, -20.5]]])),
        StrokeLayer("q", np.array([[[1e-4, 7.0], [2.9999, 3.0], [5.0, 6.0]]])),
        StrokeLayer("l", np.array([[[1.0, 2.0], [-1.5, 100.25]]]), width=2.5),
    )
    root = parse(Sketch(100, 50, layers))
    d = [p.get("d") for p in root.iter(f"{{{SVG_NS}}}path")]
    assert d == ["M 0.5 0 C 1.235 2 -3 4.1 400 -20.5", "M 0 7 Q 3 3 5 6", "M 1 2 L -1.5 100.25"]
    assert "stroke-width:2.5;" in root.findall(".//svg:path", NS)[2].get("style")


@pytest.mark.parametrize(
    "points",
    [
        np.zeros((2, 5, 2)),
        np.zeros((2, 1, 2)),
        np.zeros((2, 4, 3)),
        np.zeros((4, 2)),
        np.array([[[0.0, 0.0], [np.nan, 1.0]]]),
    ],
)
def test_strokes_that_svg_cannot_hold_are_refused(points):
    with pytest.raises(ValueError):
        sketch_to_svg(Sketch(10, 10, (StrokeLayer("bad", points),)))


def test_source_image_layer_comes_first_and_covers_the_canvas():
    root = parse(random_sketch(), image_href="photo.png")
    first = layer_groups(root)[0]
    assert first.get(LABEL) == "Source image"
    (image,) = first
    assert image.tag == f"{{{SVG_NS}}}image"
    assert image.get(f"{{{XLINK_NS}}}href") == "photo.png"
    assert [image.get(a) for a in ("x", "y", "width", "height")] == ["0", "0", "320", "240"]


# --- reading files edited by hand or by Inkscape -----------------------------------------------


def test_reads_inkscape_style_path_data():
    data = (
        HEADER
        + '<path d="M1,2C3,4,5,6,7,8" style="stroke:#123456;stroke-width:2px"/>'
        + '<g><path d="m 10,10 c 1,0 2,1 3,3"/></g>'  # relative, inside a plain group
        + '<path d="M 20 20 30 25"/>'  # implicit lineto
        + '<path d="m 20 20 10 5"/>'  # relative implicit lineto
        + "</g></svg>"
    ).encode()
    (layer,) = svg_to_sketch(data).layers
    assert (layer.label, layer.width, layer.color) == ("edited", 2.0, "#123456")
    np.testing.assert_allclose(layer.points[0], [[1, 2], [3, 4], [5, 6], [7, 8]])
    np.testing.assert_allclose(layer.points[1], [[10, 10], [11, 10], [12, 11], [13, 13]])
    # Lines are raised to cubics (the layer's largest k) without changing their shape.
    for line in layer.points[2:]:
        thirds = [[20, 20], [23 + 1 / 3, 21 + 2 / 3], [26 + 2 / 3, 23 + 1 / 3], [30, 25]]
        np.testing.assert_allclose(line, thirds)


def test_mixed_stroke_kinds_in_a_layer_keep_their_shape():
    quadratic = np.array([[0.0, 0.0], [10.0, 30.0], [20.0, 0.0]])
    paths = '<path d="M 0 0 Q 10 30 20 0"/><path d="M 0 0 C 1 2 3 4 5 6"/>'
    data = (HEADER + paths + "</g></svg>").encode()
    raised = svg_to_sketch(data).layers[0].points[0]
    t = np.linspace(0, 1, 11)
    np.testing.assert_allclose(curve(raised, t), curve(quadratic, t), atol=1e-9)


def test_size_falls_back_to_width_and_height():
    data = f'<svg xmlns="{SVG_NS}" width="64px" height="48"/>'.encode()
    assert svg_to_sketch(data) == Sketch(64, 48, ())


# --- bad input: refused by the one reader ----------------------------------------------------


def read_file(tmp_path, data: bytes):
    """What `refine` reads from a sketch file holding `data`."""
    path = tmp_path / "sketch.svg"
    path.write_bytes(data)
    return read_sketch(str(path), None)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        b"<!DOCTYPE html><html><head><meta charset='utf-8'><title>x</title></head><body></body></html>",
        b'<html xmlns="http://www.w3.org/1999/xhtml"><body><p>not a sketch</p></body></html>',
        b"<svg><path d='M 0 0 L 1 1'/></svg>",  # no SVG namespace: browsers do not draw it either
    ],
)
def test_non_svg_input_is_an_input_error(tmp_path, data):
    with pytest.raises(InputError) as info:
        read_file(tmp_path, data)
    assert "not an SVG" in info.value.message and info.value.hint


@pytest.mark.parametrize(
    "body",
    [
        '<path d="M 0 0 A 5 5 0 0 1 10 10"/>',  # an arc
        '<path d="M 0 0 C 1 1 2 2"/>',  # too few numbers
        '<path d="M 0 0 L 1 1 ; drop"/>',
        '<path d="M 0 0 L 1 1" transform="translate(5 5) wobble(2)"/>',
    ],
)
def test_strokes_that_are_not_bezier_segments_are_input_errors(tmp_path, body):
    with pytest.raises(InputError) as info:
        read_file(tmp_path, (HEADER + body + "</g></svg>").encode())
    assert info.value.hint


@pytest.mark.parametrize(
    "root",
    [
        '<svg xmlns="{ns}" viewBox="0 0 0 10"/>',
        '<svg xmlns="{ns}" viewBox="10 10 50 50"/>',
        '<svg xmlns="{ns}" width="100%" height="100%"/>',
        '<svg xmlns="{ns}"/>',
        '<svg xmlns="{ns}" viewBox="0 0 50 50"><path d="M 0 0 L 1 1"/></svg>',  # outside any layer
    ],
)
def test_files_without_a_usable_canvas_or_layers_are_input_errors(tmp_path, root):
    with pytest.raises(InputError):
        read_file(tmp_path, root.format(ns=SVG_NS).encode())


def test_parsing_reads_no_external_entities_and_refuses_entity_bombs(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    xxe = (
        f'<!DOCTYPE svg [<!ENTITY x SYSTEM "{secret.as_uri()}">]>'
        f'<svg xmlns="{SVG_NS}" xmlns:inkscape="{INKSCAPE_NS}" viewBox="0 0 9 9">'
        '<g inkscape:groupmode="layer" inkscape:label="&x;"><path d="M 0 0 L 1 1"/></g></svg>'
    ).encode()
    with pytest.raises(InputError) as refused:
        read_file(tmp_path, xxe)
    assert "SECRET" not in refused.value.message + refused.value.hint

    entities = '<!ENTITY a "aaaaaaaaaa">' + "".join(
        f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9)
    )
    bomb = (
        f'<!DOCTYPE svg [{entities}]><svg xmlns="{SVG_NS}" xmlns:inkscape="{INKSCAPE_NS}" '
        'viewBox="0 0 9 9"><g inkscape:groupmode="layer" inkscape:label="&j;"><path d="M 0 0 L 1 1"/></g></svg>'
    ).encode()
    with pytest.raises(InputError):
        read_file(tmp_path, bomb)


# --- writing files -----------------------------------------------------------------------------


def test_write_svg_writes_the_whole_file_and_no_temp_file(tmp_path):
    sketch = random_sketch()
    target = tmp_path / "out" / "sketch.svg"
    assert write_svg(target, sketch, image_href="photo.png") == target
    assert target.read_bytes() == sketch_to_svg(sketch, image_href="photo.png")
    write_svg(target, random_sketch(seed=1))  # overwrite in place
    assert_same_layers(svg_to_sketch(target.read_bytes()).layers, random_sketch(seed=1).layers)
    assert [p.name for p in target.parent.iterdir()] == ["sketch.svg"]


def test_a_failed_write_leaves_the_old_file_untouched(tmp_path):
    target = tmp_path / "sketch.svg"
    write_svg(target, random_sketch())
    before = target.read_bytes()
    broken = Sketch(10, 10, (StrokeLayer("bad", np.zeros((1, 5, 2))),))
    with pytest.raises(ValueError):
        write_svg(target, broken)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["sketch.svg"]


# --- what a real SVG renderer draws ------------------------------------------------------------


@pytest.mark.parametrize("width", [3.0, 6.0])
def test_a_real_svg_renderer_draws_what_our_rasteriser_draws(width):
    """cairosvg draws the file as `engine.render.rasterize` draws the strokes: same place, ink."""
    import cairosvg
    import torch
    from PIL import Image

    from engine.render import rasterize

    size = (80, 120)  # (H, W), not square, so a transposed axis shows
    layers = (
        StrokeLayer(
            "cubic",
            np.array(
                [
                    [[10, 10], [40, 5], [60, 30], [100, 20]],
                    [[15, 70], [30, 40], [50, 75], [70, 50]],
                    [[90, 60], [95, 65], [110, 40], [125, 75]],  # ends outside the canvas
                ],
                float,
            ),
            width=width,
        ),
        StrokeLayer("quadratic", np.array([[[20.5, 30.25], [60, 60], [80.75, 30]]]), width=width),
        StrokeLayer("line", np.array([[[5.0, 45.0], [35.5, 60.5]]]), width=width),
    )
    png = cairosvg.svg2png(bytestring=sketch_to_svg(Sketch(size[1], size[0], layers)))
    rgba = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"), dtype=float) / 255
    assert rgba.shape[:2] == size
    alpha = rgba[..., 3]
    theirs = rgba[..., :3].mean(-1) * alpha + (1 - alpha)  # composited on white
    # Opaque black ink on white: layers drawn over each other multiply.
    ours = np.prod(
        [rasterize(torch.tensor(layer.points[None]).float(), width / 2, size)[0].mean(0).numpy() for layer in layers],
        axis=0,
    )

    assert np.abs(ours - theirs).mean() < 0.03
    ink_ours, ink_theirs = (1 - ours).sum(), (1 - theirs).sum()
    assert abs(ink_ours - ink_theirs) < 0.1 * ink_theirs
    # Most pixels are white, so also compare where there is ink: a half-pixel shift fails here.
    inked = (ours < 1) | (theirs < 1)
    assert np.abs(ours - theirs)[inked].mean() < 0.05
