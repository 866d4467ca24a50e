"""The seeds of a job: which random starts a sketch makes, one rule for the command line (`--seeds N`)
and the Inkscape extension (its Seeds option and its re-runs as variations).

Standard library only (the light package).
"""

from __future__ import annotations

from bridge.errors import InputError

SEED_STEP = 1000  # the paper's seeds: 0, 1000, 2000, ...
VARIATION_STEP = 100_003  # variation v starts at (v - 1) x this: never another variation's seeds (at most 16 each)


def job_seeds(count: int, variation: int = 1) -> tuple[int, ...]:
    """`count` seeds (a level or stage keeps the best of its starts): the paper's 0, 1000, 2000, ... for
    variation 1, the same shifted by (variation - 1) x VARIATION_STEP for a later variation of a
    photo's sketch. InputError when `count` is below 1."""
    if count < 1:
        raise InputError(f"--seeds must be at least 1, got {count}", "use --seeds 3 (the paper's)")
    return tuple(SEED_STEP * i + VARIATION_STEP * (variation - 1) for i in range(count))
