"""CLIPasso speed: ours vs a reference loop shaped like the official code, in one run.

Reference: levels and seeds one after another, target augmentations recomputed every iteration,
fp32, plain NCHW layout. Ours: all levels x seeds in one batch, a bank of precomputed target
augmentations, autocast (bf16 on CPUs that support it, fp16 on CUDA), channels-last.
Real-size models with random weights (timing does not depend on the weights). Iterations are timed
for a few steps and projected to the paper's 2000; real runs often stop earlier by convergence,
which shortens both columns alike. Loss parity: the same strokes scored by both configurations.

Run: python benchmarks/clipasso.py [--device cuda] [--iterations 4]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._machine import describe
from bridge.params import ClipassoParams
from engine.io.image import load_image
from engine.methods.clipasso import optimise
from engine.preprocess import prepare_target
from engine.runtime import Runtime

IMAGE = Path(__file__).resolve().parent.parent / "examples" / "ballerina.png"
PAPER_ITERATIONS = 2000


def timed(runtime: Runtime, target, params: ClipassoParams) -> tuple[float, float, float]:
    """(seconds per iteration, setup seconds, best eval loss of the first level) of one run."""
    stamps = []
    run = optimise(
        runtime, target, params, lambda p: stamps.append(time.perf_counter()) if p.stage == "optimise" else None
    )
    per_it = statistics.median(b - a for a, b in zip(stamps[1:], stamps[2:]))  # skips warm-up step
    setup = run.seconds - per_it * run.iterations
    return per_it, setup, run.levels[0].eval_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--iterations", type=int, default=4, help="timed iterations per configuration (>= 3)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=".*random weights.*")
    ours = Runtime.create(args.device, "random")
    reference = Runtime(ours.device, "random", precision="fp32", channels_last=False)
    target, _ = prepare_target(load_image(IMAGE), None)
    n = max(3, args.iterations)
    base = ClipassoParams(iterations=n, min_delta=0.0)  # min_delta 0: nothing stops early while timing
    print(f"machine: {describe(ours.device)}")
    print(
        f"ours: autocast {ours.amp_dtype or 'off (fp32)'}, aug bank {base.aug_bank}, channels-last; "
        f"reference: fp32, augmentations recomputed, NCHW; {n} timed iterations each\n"
    )

    single = ClipassoParams(strokes=(16,), seeds=(0,), iterations=n, min_delta=0.0)
    ref_it, _, ref_loss = timed(reference, target, dataclasses.replace(single, aug_bank=0))
    our_it, our_setup, our_loss = timed(ours, target, single)
    print("one 16-stroke sketch, one seed")
    print(f"  reference  {ref_it:7.3f} s/iteration")
    print(f"  ours       {our_it:7.3f} s/iteration   ({ref_it / our_it:.2f}x; bank built once in {our_setup:.1f} s)")
    print(
        f"  loss after {n} iterations: reference {ref_loss:.6g}, ours {our_loss:.6g} "
        f"(relative difference {abs(our_loss - ref_loss) / ref_loss:.2%})\n"
    )

    per_level = []
    for strokes in base.strokes:
        it, _, _ = timed(
            reference, target, ClipassoParams(strokes=(strokes,), seeds=(0,), iterations=n, min_delta=0.0, aug_bank=0)
        )
        per_level.append(it)
    ref_wall = sum(per_level) * len(base.seeds) * PAPER_ITERATIONS
    set_it, set_setup, _ = timed(ours, target, base)
    set_wall = set_it * PAPER_ITERATIONS + set_setup
    print(
        f"full set: {len(base.strokes)} levels {list(base.strokes)} x {len(base.seeds)} seeds, "
        f"projected to {PAPER_ITERATIONS} iterations"
    )
    print(
        f"  reference  {ref_wall:9.0f} s  (12 runs one after another; s/iteration per level: "
        + ", ".join(f"{v:.3f}" for v in per_level)
        + ")"
    )
    print(
        f"  ours       {set_wall:9.0f} s  (one batch: {set_it:.3f} s/iteration for all 12 sketches, "
        f"setup {set_setup:.1f} s)  -> {ref_wall / set_wall:.1f}x"
    )


if __name__ == "__main__":
    main()
