"""Time estimates (bridge.estimates): what the dialogs and Engine Status say a sketch job takes."""

from __future__ import annotations

import pytest

from bridge.estimates import USABLE_ITERATIONS, object_sketch_time
from bridge.params import ClipassoParams


def test_the_default_job_is_usable_long_before_its_cap():
    """4 levels x 3 seeds at 0.5 s per sketch-iteration: at most 2000 iterations of 12 sketches,
    usable after the measured USABLE_ITERATIONS of them."""
    time = object_sketch_time(ClipassoParams(), 0.5)
    assert time.at_most_s == pytest.approx(0.5 * 12 * 2000)
    assert time.usable_s == pytest.approx(0.5 * 12 * USABLE_ITERATIONS)
    assert time.usable_s < time.at_most_s


def test_a_job_capped_before_it_is_usable_says_the_cap_for_both():
    params = ClipassoParams(strokes=(8,), seeds=(0, 1), iterations=USABLE_ITERATIONS // 2)
    time = object_sketch_time(params, 2.0)
    assert time.usable_s == time.at_most_s == pytest.approx(2.0 * 2 * (USABLE_ITERATIONS // 2))
