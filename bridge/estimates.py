"""How long a sketch job will take on an engine, from the speed that engine measured: the one place
the dialogs and Engine Status get their time estimates from.

An engine reports its measured seconds per iteration of one sketch (status reply, "rates"). A CLIPasso
job runs every sketch (levels x seeds) to at most its iteration cap; each stops earlier when its eval
loss stops improving. Most of the decrease comes early: benchmarks/convergence.py measures by which
iteration the clean eval loss has made 90 % of its decrease (USABLE_ITERATIONS), the point where a
sketch looks like its final self. So an estimate is "about" that long for a usable sketch and "at most"
the cap.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.params import ClipassoParams

# Iterations by which CLIPasso's clean eval loss has made 90 % of its decrease, measured by
# benchmarks/convergence.py on real-size calibrated random models (the default levels 32, 16, 8, 4,
# seed 0, an idle CPU: benchmarks/README.md, "Time to a usable sketch"): 330 with the Fast preset's cap
# of 500, 360 in a run stopped at 770 (the loss still fell ~0.35 per 100 iterations there), where the
# paper reports a recognisable sketch after about 100. Random weights' curves are not a trained
# CLIP's; the larger figure makes the "about" err long, not short.
USABLE_ITERATIONS = 360


@dataclass(frozen=True)
class TimeEstimate:
    usable_s: float  # about this long until every sketch is usable (90 % of its loss decrease)
    at_most_s: float  # every sketch running to the iteration cap (the stop rule usually ends sooner)


def object_sketch_time(params: ClipassoParams, sketch_iteration_s: float) -> TimeEstimate:
    """The time an Object Sketch request with `params` takes on an engine that measured
    `sketch_iteration_s` seconds per iteration of one sketch (its status reply's rates["sketch"]): all
    levels x seeds, about until usable and at most to the cap."""
    return sketch_job_time(sketch_iteration_s, len(params.strokes) * len(params.seeds), params.iterations)


def sketch_job_time(sketch_iteration_s: float, sketches: int, iterations: int) -> TimeEstimate:
    """The same estimate from counts alone (`sketches` = levels x seeds of every photo), for a client
    that holds a preset's numbers rather than a request."""
    per_iteration = sketch_iteration_s * sketches
    return TimeEstimate(
        usable_s=per_iteration * min(iterations, USABLE_ITERATIONS), at_most_s=per_iteration * iterations
    )
