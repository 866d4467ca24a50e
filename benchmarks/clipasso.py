"""CLIPasso speed and precision: ours vs a reference loop shaped like the official code, in one run.

Reference: levels and seeds one after another, target augmentations recomputed every iteration,
the official code's arithmetic (fp32 on a CPU, fp16 on CUDA), plain NCHW layout. Ours: all levels x
seeds in one batch, a bank of precomputed target augmentations, `--precision auto` (the same
arithmetic), channels-last; and the one-sketch case again with `--precision bf16`.
Real-size models with random weights (timing does not depend on the weights). Iterations are timed
for a few steps and projected to the paper's 2000; real runs often stop earlier by convergence,
which shortens both columns alike. Loss parity: the same strokes scored by both configurations.
Precision parity: one sketch's loss and image gradient (the direction the optimiser follows) in each
precision against fp64, on the same inputs, without and with 4 augmentations.

Run: python benchmarks/clipasso.py [--device cuda] [--iterations 4] [--models tiny-random --skip-parity --skip-bf16]
(the last three: a quick smoke run of the script itself, as benchmarks/gpu.sh --smoke does)
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._machine import describe, peak_memory, peaks
from benchmarks._precision import clipasso_image_loss, gradient_parity, official_runtime
from bridge.params import ClipassoParams
from engine.clip.models import RN101, VIT_B32
from engine.io.image import load_image
from engine.methods.augment import random_augmentations
from engine.methods.clipasso import initial_strokes, optimise
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
    parser.add_argument("--models", default="random", choices=("random", "tiny-random"), help="tiny-random: smoke")
    parser.add_argument("--skip-parity", action="store_true", help="no precision parity section")
    parser.add_argument("--skip-bf16", action="store_true", help="no bf16 row")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=".*random weights.*")
    ours = Runtime.create(args.device, args.models)
    reference = official_runtime(ours.device, args.models)
    memory: dict[str, list[float]] = {"reference": [], "ours": []}
    target, _ = prepare_target(load_image(IMAGE), None)
    n = max(3, args.iterations)
    base = ClipassoParams(iterations=n, min_delta=0.0)  # min_delta 0: nothing stops early while timing
    print(f"machine: {describe(ours.device)}")
    print(
        f"ours: autocast {ours.amp_dtype or 'off (fp32)'}, aug bank {base.aug_bank}, channels-last; "
        f"reference: autocast {reference.amp_dtype or 'off (fp32)'}, augmentations recomputed, NCHW; "
        f"{n} timed iterations each\n"
    )

    single = ClipassoParams(strokes=(16,), seeds=(0,), iterations=n, min_delta=0.0)
    with peak_memory(ours.device, memory["reference"]):
        ref_it, _, ref_loss = timed(reference, target, dataclasses.replace(single, aug_bank=0))
    with peak_memory(ours.device, memory["ours"]):
        our_it, our_setup, our_loss = timed(ours, target, single)
    print("one 16-stroke sketch, one seed")
    print(f"  reference  {ref_it:7.3f} s/iteration")
    print(f"  ours       {our_it:7.3f} s/iteration   ({ref_it / our_it:.2f}x; bank built once in {our_setup:.1f} s)")
    bf16_text = ""
    if not args.skip_bf16:
        bf16 = Runtime.create(args.device, args.models, precision="bf16")
        bf16_it, _, bf16_loss = timed(bf16, target, single)
        print(f"  ours, bf16 {bf16_it:7.3f} s/iteration   ({ref_it / bf16_it:.2f}x)")
        bf16_text = f", ours in bf16 {bf16_loss:.6g}"
    print(
        f"  loss after {n} iterations: reference {ref_loss:.6g}, ours {our_loss:.6g} "
        f"(relative difference {abs(our_loss - ref_loss) / ref_loss:.2%}){bf16_text}"
    )
    print(peaks("one sketch", memory) + "\n")
    if not args.skip_parity:
        precision_parity(ours, target)
    memory = {"reference": [], "ours": []}

    per_level = []
    for strokes in base.strokes:
        with peak_memory(ours.device, memory["reference"]):
            it, _, _ = timed(
                reference,
                target,
                ClipassoParams(strokes=(strokes,), seeds=(0,), iterations=n, min_delta=0.0, aug_bank=0),
            )
        per_level.append(it)
    ref_wall = sum(per_level) * len(base.seeds) * PAPER_ITERATIONS
    with peak_memory(ours.device, memory["ours"]):
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
    if line := peaks("full set (reference: its largest run)", memory):
        print(line)


def precision_parity(runtime: Runtime, target) -> None:
    """Loss and image-gradient cosine of each precision against fp64, for the initial 16-stroke sketch."""
    runtime.clip(RN101)  # both models loaded: the fp64 reference runs double copies of them
    runtime.clip(VIT_B32)
    target = target.to(runtime.device)
    points = initial_strokes(runtime, target, ClipassoParams(strokes=(16,), seeds=(0,)))
    sketch = runtime.rasterize(points.to(runtime.device), 1.5, (224, 224)).detach()
    augmentations = random_augmentations(4, 224, torch.Generator().manual_seed(0))
    print("precision parity, one 16-stroke sketch against fp64 (loss; cosine of the image gradient)")
    for label, augs in (("clean pair", None), ("clean + 4 augmentations", augmentations)):
        parity = gradient_parity(clipasso_image_loss(target, augs), runtime, sketch)
        cells = ", ".join(f"{p} {loss:.6g}; {cosine:.4f}" for p, (loss, cosine) in parity.items())
        print(f"  {label:<24} {cells}")
    print()


if __name__ == "__main__":
    main()
