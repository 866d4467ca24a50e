"""Refine Sketch (docs/method.md#refine-sketch): a layer read back from SVG, refined around locked
strokes, written back in place; the `refine` command and the same job over the bridge."""

from __future__ import annotations

import json
import re
import shlex
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from lxml import etree
from PIL import Image

from bridge import svgtransform
from bridge.errors import InputError
from bridge.params import RefineParams, RefineRequest, request_from_json, request_to_json
from bridge.sketchlayer import Refined, layer_paths, read_layer, write_back
from bridge.svgpath import IMPORTANCE, segments
from bridge.svgtransform import IDENTITY
from engine.cli import main
from engine.methods.clipasso import eval_loss
from engine.methods.refine import added_strokes, covered, refine, simplified
from tests.harness.paths import ANIMAL

SVG_NS = "http://www.w3.org/2000/svg"
INKSCAPE_NS = "http://www.inkscape.org/namespaces/inkscape"
NSMAP = (
    'xmlns="http://www.w3.org/2000/svg" xmlns:inkscape="http://www.inkscape.org/namespaces/inkscape" '
    'xmlns:sodipodi="http://sodipodi.sourceforge.net/DTD/sodipodi-0.dtd"'
)
TINY = ("--models", "tiny-random", "--device", "cpu", "--aug-bank", "4", "-q")


def layer_doc(paths: str) -> etree._Element:
    return etree.fromstring(
        f'<svg {NSMAP} viewBox="0 0 248 248"><g id="L" inkscape:groupmode="layer" inkscape:label="4 strokes">'
        f"{paths}</g></svg>"
    )


# --- reading a layer and writing it back (the light package) ---------------------------------------


def test_pen_paths_are_split_into_segments_and_locks_are_read():
    doc = layer_doc(
        '<path id="a" d="M 10 10 C 20 0 30 0 40 10 l 5 5 Q 60 30 70 20" style="stroke-width:2"/>'
        '<g sodipodi:insensitive="true"><path id="b" d="m 100 100 h 10 v 10 z" stroke-width="4"/></g>'
        '<g inkscape:groupmode="layer"><path id="other-layer" d="M 0 0 L 1 1"/></g>'
    )
    layer = doc[0]
    strokes = read_layer(layer, layer_paths(layer), lambda path: IDENTITY)
    assert [p.get("id") for p in strokes.paths] == ["a", "b"], "sublayers are other layers"
    assert strokes.strokes == [
        ((10, 10), (20, 0), (30, 0), (40, 10)),
        ((40, 10), (45, 15)),
        ((45, 15), (60, 30), (70, 20)),
        ((100, 100), (110, 100)),
        ((110, 100), (110, 110)),
        ((110, 110), (100, 100)),
    ]
    assert strokes.owners == [0, 0, 0, 1, 1, 1]
    assert strokes.locked == [False] * 3 + [True] * 3
    assert strokes.widths == [2] * 3 + [4] * 3


def test_an_arc_is_refused_naming_the_path():
    doc = layer_doc('<path id="round" d="M 0 0 A 5 5 0 0 1 10 10"/>')
    with pytest.raises(InputError, match=r"round.*arc"):
        read_layer(doc[0], layer_paths(doc[0]), lambda path: IDENTITY)


def test_write_back_keeps_locked_paths_splits_drops_and_adds():
    doc = layer_doc(
        '<path id="keep" sodipodi:insensitive="true" d="M 1 1 L 2 2" style="stroke:#f00;stroke-width:3" x="1"/>'
        '<path id="two" d="M 10 10 L 20 20 L 30 10" style="stroke:#00f;stroke-width:2" sodipodi:nodetypes="ccc"/>'
        '<path id="gone" d="M 50 50 L 60 60" style="stroke-width:2"/>'
    )
    layer = doc[0]
    locked_before = etree.tostring(layer[0])
    strokes = read_layer(layer, layer_paths(layer), lambda path: (2.0, 0.0, 0.0, 2.0, 0.0, 0.0))  # 1 unit = 2 px
    result = [
        Refined(0, ((9, 9), (9, 9)), 0.5),  # a locked stroke's echo: ignored
        Refined(1, ((20, 20), (40, 40)), 0.1),
        Refined(2, ((40, 40), (60, 20)), 0.3),
        Refined(-1, ((100, 100), (120, 100), (140, 120), (160, 100)), 0.2),
    ]  # stroke 3 ("gone") was dropped
    ids = iter(["new-1", "new-2"])
    written = write_back(strokes, result, 8.0, lambda: next(ids))
    paths = layer_paths(layer)
    assert [p.get("id") for p in paths] == ["keep", "two", "new-1", "new-2"]
    assert etree.tostring(paths[0]) == locked_before, "locked paths are not touched"
    assert paths[1].get("d") == "M 10 10 L 20 20" and paths[2].get("d") == "M 20 20 L 30 10", "in the path's units"
    assert paths[2].get("style") == paths[1].get("style"), "a split path's pieces keep its style"
    assert paths[1].get("{http://sodipodi.sourceforge.net/DTD/sodipodi-0.dtd}nodetypes") is None
    assert paths[3].get("d") == "M 50 50 C 60 50 70 60 80 50"
    assert "stroke-width:4" in paths[3].get("style") and "stroke:#00f" in paths[3].get("style")
    assert [p.get("id") for p in written] == ["new-1", "new-2", "two"], "most important first"
    assert [float(p.get(IMPORTANCE)) for p in paths[1:]] == [0.1, 0.3, 0.2]


@pytest.mark.parametrize(
    "transform, expected",
    [
        ("translate(10,5)", (11, 7)),
        ("translate(10)", (11, 2)),
        ("scale(2,3)", (2, 6)),
        ("scale(2)", (2, 4)),
        ("rotate(90)", (-2, 1)),
        ("rotate(90 10 10)", (18, 1)),  # about (10, 10): (1, 2) is (-9, -8) from it, turned to (8, -9)
        ("skewX(45)", (3, 2)),
        ("skewY(45)", (1, 3)),
        ("matrix(1,2,3,4,5,6)", (12, 16)),
        ("translate(10,0) scale(2)", (12, 4)),  # the list applies right to left: scale first
        ("scale(2),translate(10,0)", (22, 4)),
        ("translate(-1e1 0)rotate(180)", (-11, -2)),
        ("", (1, 2)),
    ],
)
def test_each_transform_kind_and_a_chain_map_a_point_as_computed_by_hand(transform, expected):
    assert svgtransform.apply(svgtransform.parse(transform), (1.0, 2.0)) == pytest.approx(expected, abs=1e-12)


def test_a_path_maps_through_its_own_and_every_ancestors_transform():
    doc = etree.fromstring(
        f'<svg {NSMAP}><g transform="translate(100,0)"><g id="g" transform="scale(2)">'
        '<path id="p" transform="translate(1,1)" d="M 0 0 L 1 1"/></g></g></svg>'
    )
    path = doc.find(".//{*}path")
    assert svgtransform.apply(svgtransform.to_document(path), (0.0, 0.0)) == (102.0, 2.0)


@pytest.mark.parametrize(
    "where, transform, words",
    [
        ("path", "translate(1,,2)", "translate(1,,2) takes numbers only"),
        ("path", "skewX(1 2)", "skewX takes 1 numbers, got 2"),
        ("path", "shift(3)", "'shift(3)' is not a transform"),
        ("group", "rotate(a)", "on the group 'g' around it"),
        ("group", "scale(1e999)", "out of range"),
    ],
)
def test_a_transform_that_does_not_parse_is_refused_naming_the_path_and_line(where, transform, words):
    group, path = (f' transform="{transform}"', "") if where == "group" else ("", f' transform="{transform}"')
    doc = etree.fromstring(f'<svg {NSMAP}>\n<g id="g"{group}>\n<path id="p"{path} d="M 0 0 L 1 1"/></g></svg>')
    with pytest.raises(InputError, match=r"path 'p' \(line 3\)") as failure:
        svgtransform.to_document(doc.find(".//{*}path"))
    assert words in failure.value.message


def test_the_fetch_a_refine_job_needs_later_names_its_engine_sketch_and_layer(tmp_path):
    """What `refine --remote` and `submit --refine` print for fetching the job later (after Ctrl-C)
    is a `fetch` command line that names the same engine, sketch and layer."""
    from engine.cli import build_parser
    from engine.cli.client import fetch_options
    from engine.cli.refine import read_sketch

    sketch = tmp_path / "my sketch.svg"
    sketch.write_bytes(etree.tostring(layer_doc('<path id="a" d="M 1 1 L 2 2"/>')))
    options = fetch_options("/srv/studio key.json", read_sketch(str(sketch), "4 strokes"))
    args = build_parser().parse_args(["fetch", "JOB", *shlex.split(options), "-o", "out.svg"])
    assert (args.remote, args.refine, args.layer) == ("/srv/studio key.json", str(sketch), "L")


def test_a_sketch_with_internal_entities_is_refused_not_written_back_broken(tmp_path):
    """Issue 22: entities are not expanded, so `&a;` would be written back without its declaration."""
    from engine.cli.refine import read_sketch

    sketch = tmp_path / "entity.svg"
    document = etree.tostring(layer_doc('<path id="a" d="M 1 1 L 2 2"/><text>ENTITY</text>')).decode()
    sketch.write_text('<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "x">]>' + document.replace("ENTITY", "&a;"))
    with pytest.raises(InputError, match="declares XML entities") as refused:
        read_sketch(str(sketch), None)
    assert "Plain SVG" in refused.value.hint


@pytest.mark.parametrize(
    "document, words",
    [
        (etree.tostring(layer_doc('<path d="M 10 10 L 1e308 20"/>')).decode(), "move the stroke back over the photo"),
        (
            etree.tostring(layer_doc('<path d="M 10 10 L 20 20"/>')).decode().replace("0 0 248 248", "0 0 1e400 248"),
            "no usable size",
        ),
    ],
    ids=["coordinate-1e308", "viewBox-1e400"],
)
def test_absurd_numbers_are_refused_before_any_job_runs(tmp_path, capsys, document, words):
    """Issue 22: a coordinate of 1e308 (finite, infinite once scaled) and a viewBox of 1e400 were
    refused only after the whole job had run, or as a bug. Now: exit 2 with the reason, no output."""
    sketch, out = tmp_path / "absurd.svg", tmp_path / "out.svg"
    sketch.write_text(document)
    code = main(["refine", str(ANIMAL), str(sketch), "-o", str(out), "--models", "tiny-random", "--iterations", "11"])
    said = capsys.readouterr().err
    assert code == 2 and words in said and "Traceback" not in said and "bug" not in said, said
    assert not out.exists()


# --- the request --------------------------------------------------------------------------------------


def request(**changes) -> RefineRequest:
    values = dict(
        image=str(ANIMAL),
        strokes=((10.0, 10.0, 50.0, 50.0), (60.0, 60.0, 70.0, 80.0, 90.0, 60.0)),
        locked=(True, False),
        widths=(3.0, 3.0),
        params=RefineParams(iterations=11, aug_bank=4),
    )
    values.update(changes)
    return RefineRequest(**values)


def test_the_request_travels_as_json_and_buffers():
    job, buffers = request_to_json(request().validate())
    job = json.loads(json.dumps(job))  # as the protocol sends it
    assert job["kind"] == "refine" and job["strokes"][1] == [60.0, 60.0, 70.0, 80.0, 90.0, 60.0]
    back = request_from_json(job, buffers)
    assert back.strokes == request().strokes and back.locked == (True, False) and back.params == request().params


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"locked": (True, True)}, "every stroke is locked"),
        ({"locked": (True,)}, "one true/false per stroke"),
        ({"widths": (3.0, -1.0)}, "positive width"),
        ({"strokes": ((1.0, 2.0, 3.0),)}, "control points"),
        ({"params": RefineParams(iterations=5)}, "iterations must be 11"),
        ({"params": RefineParams(simplify=1, add=1)}, "not both"),
        ({"params": RefineParams(simplify=0 + 2)}, "cannot simplify 2 strokes"),
    ],
)
def test_bad_requests_are_refused_naming_the_problem(changes, words):
    with pytest.raises(InputError, match=words):
        request(**changes).validate()


# --- the optimisation --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_size():
    """Real-size random CLIP models: losses large enough that a few iterations move strokes."""
    from engine.runtime import Runtime

    rt = Runtime.create("cpu", "random")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        rt.load("RN101")
    return rt


@pytest.mark.slow
def test_locked_strokes_stay_bit_identical_and_the_others_move_without_raising_the_loss(real_size, animal_target):
    generator = torch.Generator().manual_seed(0)
    start = torch.rand(6, 4, 2, generator=generator) * 160 + 32  # (n, k, 2) canvas px
    half_width = torch.full((6,), 1.5)
    locked = torch.tensor([True, False, True, False, False, False])
    given = start.clone()
    run = refine(real_size, animal_target, start, half_width, locked, RefineParams(iterations=21, aug_bank=4), 1.5)
    assert torch.equal(start, given), "the caller's strokes are not stepped in place"
    assert torch.equal(run.points[locked], start[locked]), "locked strokes keep their exact values"
    moved = (run.points[~locked] - start[~locked]).abs().amax(dim=(1, 2))
    assert (moved > 0.1).all(), moved
    before = float(eval_loss(real_size, animal_target, start[None], half_width[None])[0])
    after = float(eval_loss(real_size, animal_target, run.points[None], half_width[None])[0])
    assert run.start_loss == pytest.approx(before, rel=1e-4)
    assert after <= before * (1 + 1e-5), (before, after)
    assert run.sources.tolist() == list(range(6))


def test_added_strokes_start_on_salient_ink_the_sketch_does_not_cover(runtime, animal_target):
    from engine.methods.init import salient_edges

    start = torch.tensor([[[60.0, 60.0], [90.0, 70.0], [120.0, 70.0], [150.0, 60.0]]]).repeat(4, 1, 1)
    start += torch.arange(4.0)[:, None, None] * torch.tensor([0.0, 30.0])  # 4 strokes, 30 px apart
    half_width = torch.full((4,), 1.5)
    new = added_strokes(runtime, animal_target, start, half_width, 4, torch.Generator().manual_seed(1))
    assert new.shape == (4, 4, 2)
    _, ink = salient_edges(runtime, animal_target)
    taken = covered(start, half_width)
    assert taken.any() and (ink & taken).any(), "the test's sketch covers some of the edges"
    col, row = new[:, 0, 0].long(), new[:, 0, 1].long()  # each start point is a pixel centre
    assert (ink[row, col] & ~taken[row, col]).all()


def test_simplify_keeps_locked_strokes_and_the_most_important_others_in_order():
    scores = torch.tensor([0.1, 0.5, -0.2, 0.3, 0.0])  # stroke 0 is locked: kept whatever its score
    assert simplified(scores, torch.tensor([True, False, False, False, False]), 3).tolist() == [0, 1, 3]


def test_simplify_then_refine_keeps_the_locked_stroke_and_the_count_asked(runtime, animal_target):
    start = torch.rand(5, 4, 2, generator=torch.Generator().manual_seed(2)) * 160 + 32  # (n, k, 2) canvas px
    locked = torch.tensor([False, False, False, True, False])
    params = RefineParams(iterations=11, simplify=3, aug_bank=4)
    run = refine(runtime, animal_target, start, torch.full((5,), 1.5), locked, params, 1.5)
    assert len(run.points) == 3 and 3 in run.sources.tolist()
    assert torch.equal(run.points[run.sources.tolist().index(3)], start[3])


# --- the command -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def four_strokes(tmp_path_factory):
    """A 4-stroke sketch of the animal with its second path locked (as Inkscape writes a lock)."""
    folder = tmp_path_factory.mktemp("refine")
    svg = folder / "animal.svg"
    args = ["sketch", str(ANIMAL), "-o", str(svg), "--strokes", "4", "--seeds", "1", "--iterations", "2", *TINY]
    assert main(args) == 0
    root = etree.parse(str(svg)).getroot()
    path = root.findall(f".//{{{SVG_NS}}}path")[1]
    path.set("id", "mine")
    path.set("{http://sodipodi.sourceforge.net/DTD/sodipodi-0.dtd}insensitive", "true")
    svg.write_bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))
    return svg


ADD_4 = ("--add", "4", "--iterations", "11", *TINY)


@pytest.fixture(scope="module")
def added_4(four_strokes) -> Path:
    """`four_strokes` refined with --add 4."""
    out = four_strokes.with_name("out.svg")
    assert main(["refine", str(ANIMAL), str(four_strokes), "--layer", "4 strokes", *ADD_4, "-o", str(out)]) == 0
    return out


def test_refine_add_4_gives_8_strokes_and_keeps_the_locked_path(four_strokes, added_4):
    out = added_4
    before, after = etree.parse(str(four_strokes)).getroot(), etree.parse(str(out)).getroot()
    paths = after.findall(f".//{{{SVG_NS}}}path")
    assert len(paths) == 8
    assert after[0].get("{http://www.inkscape.org/namespaces/inkscape}label") == "8 strokes"
    locked = [p for p in paths if p.get("id") == "mine"]
    assert len(locked) == 1 and etree.tostring(locked[0]) == etree.tostring(before.find(".//*[@id='mine']"))
    assert all(p.get(IMPORTANCE) for p in paths)


def test_a_refined_sketch_animates_in_its_importance_order(added_4, tmp_path):
    """Issue 26: `animate` takes refined sketches too: the refined layer's 8 strokes are drawn most
    important first (the scores refine wrote), one GIF frame at least per stroke."""
    layer = next(
        g
        for g in etree.parse(str(added_4)).getroot().iter(f"{{{SVG_NS}}}g")
        if g.get(f"{{{INKSCAPE_NS}}}label") == "8 strokes"
    )
    paths = [(float(p.get(IMPORTANCE)), segments(p.get("d"))[0][0]) for p in layer.iter(f"{{{SVG_NS}}}path")]
    assert len(paths) == 8
    expected = [start for _, start in sorted(paths, key=lambda item: -item[0])]
    out, gif = tmp_path / "refined-anim.svg", tmp_path / "refined.gif"
    args = ["animate", str(added_4), "--layer", "8 strokes", "-o", str(out), "-o", str(gif), "--fps", "4", "-q"]
    assert main([*args, "--duration", "2"]) == 0
    drawn = [segments(p.get("d"))[0][0] for p in etree.parse(str(out)).getroot().iter(f"{{{SVG_NS}}}path")]
    assert np.allclose(drawn, expected, atol=0.01), (drawn, expected)
    assert Image.open(gif).n_frames >= 8 + 1


def test_a_transformed_layer_gives_the_same_refine_and_is_written_back_in_its_own_units(four_strokes, tmp_path):
    """The same sketch with its layer group translated and scaled (the paths' data and widths in the
    group's units): the refine request is the same as the plain sketch's to 1e-9 px, so is the
    refinement (a deterministic function of it, as the command computes it), and a result is
    written back into both at the same photo pixels (1e-3 canvas px), the group's transform kept."""
    from engine.cli import build_parser
    from engine.cli.refine import read_sketch, refine_job, write_refined
    from engine.strokes import Sketch, StrokeLayer
    from engine.svg import sketch_to_svg

    group = "translate(20,10) scale(0.5)"
    root = etree.parse(str(four_strokes)).getroot()
    root[0].set("transform", group)
    back = svgtransform.invert(svgtransform.parse(group))
    for path in root[0].iter(f"{{{SVG_NS}}}path"):
        (segment,) = segments(path.get("d"))
        points = [svgtransform.apply(back, point) for point in segment]
        path.set("d", "M {} {} C {} {} {} {} {} {}".format(*(v for point in points for v in point)))
        path.set(
            "style", re.sub(r"stroke-width:([\d.]+)", lambda m: f"stroke-width:{2 * float(m[1])}", path.get("style"))
        )
    moved = tmp_path / "moved.svg"
    moved.write_bytes(etree.tostring(root))
    sketches = [read_sketch(str(svg), "4 strokes", (248, 248)) for svg in (four_strokes, moved)]
    args = build_parser().parse_args(["refine", str(ANIMAL), str(moved), "--add", "1"])
    plain, turned = (refine_job(args, str(ANIMAL), sketch) for sketch in sketches)
    assert np.abs(np.array(plain.strokes) - np.array(turned.strokes)).max() < 1e-9
    assert turned.widths == pytest.approx(plain.widths, rel=1e-9) and turned.locked == plain.locked

    given = np.array(plain.strokes).reshape(4, 4, 2)
    added = [[[50.0, 50.0], [60.0, 40.0], [70.0, 60.0], [80.0, 50.0]]]
    result = np.concatenate([given + np.array([3.0, -2.0]), added])  # (5, 4, 2) photo px
    layer = StrokeLayer("5 strokes", result, width=3.0, importance=(0.5, 0.4, 0.3, 0.2, 0.1), sources=(0, 1, 2, 3, -1))
    svg = sketch_to_svg(Sketch(248, 248, (layer,)))
    outs = [tmp_path / "plain-out.svg", tmp_path / "moved-out.svg"]
    for sketch, out in zip(sketches, outs):
        write_refined(sketch, svg, out)
    written = [etree.parse(str(out)).getroot()[0] for out in outs]
    assert written[1].get("transform") == group
    paths = [layer_paths(layer) for layer in written]
    assert [p.get("id") for p in paths[0]] == [p.get("id") for p in paths[1]] and len(paths[0]) == 5
    to_photo = svgtransform.parse(group)
    for a, b in zip(*paths):
        expected = np.array(segments(a.get("d"))[0])
        got = np.array([svgtransform.apply(to_photo, point) for point in segments(b.get("d"))[0]])
        assert np.abs(got - expected).max() / (248 / 224) < 1e-3, (a.get("id"), got, expected)
    mine = [p for p in paths[1] if p.get("id") == "mine"]
    assert etree.tostring(mine[0]) == etree.tostring(root.find(".//*[@id='mine']")), "locked: untouched"
    assert paths[1][-1].get("style").endswith("stroke-width:6"), "the added stroke's 3 px in the group's units"


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--layer", "nope"], "no layer 'nope'"),
        (["--simplify", "4"], "cannot simplify 4 strokes"),
        (["--iterations", "3"], "iterations must be 11"),
    ],
)
def test_bad_input_exits_2_naming_the_problem_and_writes_nothing(four_strokes, tmp_path, capsys, extra, words):
    out = tmp_path / "out.svg"
    assert main(["refine", str(ANIMAL), str(four_strokes), *extra, *TINY, "-o", str(out)]) == 2
    assert words in capsys.readouterr().err and not out.exists()


def test_a_sketch_of_another_photo_is_refused(four_strokes, tmp_path, capsys):
    from tests.harness.paths import VASE

    assert main(["refine", str(VASE), str(four_strokes), *TINY, "-o", str(tmp_path / "o.svg")]) == 2
    assert "the sketch is 248x248 px but the photo is 240x240" in capsys.readouterr().err


@pytest.mark.slow
def test_refine_over_the_bridge_returns_the_strokes_with_their_sources(client):
    """Through the session's tiny-model engine (tests/harness)."""
    from tests.harness.engine import JOB_S

    job, buffers = request_to_json(request().validate())
    job_id, _ = client.submit(job, buffers, name="refine.png")
    svg = client.wait(job_id, timeout_s=JOB_S).svg
    paths = etree.fromstring(svg).findall(f".//{{{SVG_NS}}}path")
    sources = sorted(int(p.get("{https://sketch-abstraction.org/ns}source")) for p in paths)
    assert sources == [0, 1]
    locked = next(p for p in paths if p.get("{https://sketch-abstraction.org/ns}source") == "0")
    assert locked.get("d") == "M 10 10 Q 30 30 50 50", "a locked line comes back as given, raised to a quadratic"
