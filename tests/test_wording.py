"""Counts read as a designer writes them: '1 level x 1 seed', never '1 levels x 1 seeds'."""

from __future__ import annotations

from bridge.params import ClipassoParams, SceneParams, SceneRequest, SketchRequest
from bridge.wording import count
from engine import budget
from tests.harness.paths import ANIMAL, FIELD


def test_count_is_singular_for_one_and_plural_otherwise():
    assert [count(n, "seed") for n in (0, 1, 2)] == ["0 seeds", "1 seed", "2 seeds"]
    assert count(1, "sketch", "sketches") == "1 sketch" and count(3, "sketch", "sketches") == "3 sketches"


def test_the_engines_job_sizes_use_singulars(runtime):
    one = SketchRequest(image=str(ANIMAL), params=ClipassoParams(strokes=(4,), seeds=(0,)))
    assert budget.estimate(runtime, "sketch", one).what.startswith("1 sketch: 1 level x 1 seed,")
    scene = SceneRequest(image=str(FIELD), mask="none", params=SceneParams(layers=(4,), seeds=(0,)))
    assert budget.estimate(runtime, "scene", scene).what.startswith("1 sketch: 1 part x 1 layer x 1 seed,")
