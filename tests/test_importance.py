"""Strokes ranked by importance (docs/method.md#stroke-importance): the leave-one-out loss increase,
every leave-one-out sketch in one batched pass, recorded on each path of the SVG."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from lxml import etree

from bridge.params import ClipassoParams, SketchRequest
from bridge.svgpath import IMPORTANCE
from engine.jobs import run_sketch
from engine.methods.clipasso import eval_loss, optimise, stroke_importance
from engine.methods.importance import by_importance, leave_one_out
from engine.render import rasterize
from engine.svg import sketch_to_svg
from tests.harness.paths import ANIMAL
from tests.sketch_svg import svg_to_sketch

SIZE = 64


def _line(x0, y0, x1, y1):
    return [[x0, y0], [x1, y1]]


def test_the_stroke_that_carries_the_only_ink_ranks_first():
    """One stroke traces the target's only ink; the others lie on blank paper. Removing the tracing
    stroke costs the most; removing a stray one makes the sketch better (a negative score)."""
    strokes = torch.tensor(
        [
            _line(5, 55, 20, 58),  # blank paper
            _line(50, 5, 58, 20),  # blank paper
            _line(10, 32, 54, 32),  # the target's ink
            _line(40, 45, 44, 58),  # blank paper
        ],
        dtype=torch.float32,
    )  # (n, 2, 2) px
    target = rasterize(strokes[None, 2:3], 1.5, (SIZE, SIZE))  # (1, 3, H, W): stroke 2 alone
    n = len(strokes)
    calls = []

    def pixel_loss(drawn: torch.Tensor) -> torch.Tensor:  # the eval loss's interface: drawn (B, n) -> (B,)
        calls.append(len(drawn))
        images = rasterize(strokes.expand(len(drawn), -1, -1, -1), 1.5 * drawn, (SIZE, SIZE))
        return (images - target).square().flatten(1).mean(1)

    scores = leave_one_out(pixel_loss, n)
    assert calls == [n + 1], "the whole sketch and every leave-one-out sketch in one pass"
    assert by_importance(scores).tolist()[0] == 2
    assert scores[2] > 0 and (scores[[0, 1, 3]] < 0).all(), scores


def test_a_left_out_stroke_draws_nothing_and_batches_agree_with_single_evals(runtime, animal_target):
    """The batched scores equal the eval loss of each sketch without that stroke, computed alone."""
    generator = torch.Generator().manual_seed(3)
    points = torch.rand(5, 4, 2, generator=generator) * 200 + 12  # (n, k, 2) canvas px
    scores = stroke_importance(runtime, animal_target, points, 1.5)
    whole = eval_loss(runtime, animal_target, points[None], 1.5)
    for i in range(len(points)):
        rest = torch.cat([points[:i], points[i + 1 :]])[None]
        alone = eval_loss(runtime, animal_target, rest, 1.5) - whole
        # fp32 CLIP on batches of other sizes: losses of ~1e-5 agree to ~2e-8
        assert torch.allclose(scores[i], alone[0], rtol=2e-2, atol=5e-3 * float(whole)), (i, scores[i], alone)
        drawn = torch.ones(len(points))
        drawn[i] = 0
        assert torch.equal(rasterize(points[None], 1.5 * drawn), rasterize(rest, 1.5)), "width 0 draws nothing"


def test_levels_come_most_important_first_with_their_scores(runtime, animal_target):
    params = ClipassoParams(strokes=(6, 3), seeds=(0,), iterations=4, aug_bank=4, min_delta=0.0)
    run = optimise(runtime, animal_target, params)
    for level in run.levels:
        assert level.importance.shape == (level.strokes,)
        assert (level.importance[:-1] >= level.importance[1:]).all(), level.importance
        again = stroke_importance(runtime, animal_target, level.points, params.half_width)
        assert torch.allclose(again, level.importance, rtol=2e-2, atol=5e-3 * level.eval_loss)


def test_the_svg_records_each_strokes_importance_in_the_projects_namespace(runtime):
    params = ClipassoParams(strokes=(5,), seeds=(0,), iterations=2, aug_bank=2)
    result = run_sketch(runtime, SketchRequest(image=str(ANIMAL), params=params))
    svg = sketch_to_svg(result.sketch)
    root = etree.fromstring(svg)
    assert root.nsmap["sketchabs"] == "https://sketch-abstraction.org/ns"
    recorded = [float(p.get(IMPORTANCE)) for p in root.iter("{http://www.w3.org/2000/svg}path")]
    assert np.allclose(recorded, result.levels[0].importance.numpy(), rtol=1e-5, atol=0)
    assert recorded == sorted(recorded, reverse=True)
    assert svg_to_sketch(svg).layers[0].importance == tuple(recorded), "read back with the strokes"


def test_a_layer_without_recorded_scores_reads_back_without_them():
    layer = dataclasses.replace(svg_to_sketch(_one_stroke_svg()).layers[0])
    assert layer.importance == ()


def _one_stroke_svg() -> bytes:
    return (
        b'<svg xmlns="http://www.w3.org/2000/svg" xmlns:inkscape="http://www.inkscape.org/namespaces/inkscape" '
        b'viewBox="0 0 10 10"><g inkscape:groupmode="layer" inkscape:label="1 stroke">'
        b'<path d="M 1 1 L 5 5" style="stroke-width:2"/></g></svg>'
    )


def test_levels_over_the_ranking_limit_keep_their_order_and_record_no_scores(runtime, monkeypatch):
    """Leave-one-out draws n + 1 sketches of n strokes: levels over RANK_LIMIT are not ranked (a
    1024-stroke level would take minutes)."""
    import engine.methods.clipasso as clipasso

    monkeypatch.setattr(clipasso, "RANK_LIMIT", 3)
    params = ClipassoParams(strokes=(4, 3), seeds=(0,), iterations=1, aug_bank=2)
    result = run_sketch(runtime, SketchRequest(image=str(ANIMAL), params=params))
    unranked, ranked = result.levels
    assert unranked.importance.numel() == 0 and ranked.importance.shape == (3,)
    assert unranked.best_iteration == 0, "after one iteration the result is the start, in drawing order"
    root = etree.fromstring(sketch_to_svg(result.sketch))
    layers = root.findall("{http://www.w3.org/2000/svg}g")
    assert [len([p for p in g if p.get(IMPORTANCE)]) for g in layers] == [0, 3]
