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
     python benchmarks/clipasso.py --contention: one sketch's slow-down when every core is busy
(the last three: a quick smoke run of the script itself, as benchmarks/gpu.sh --smoke does)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import engine  # noqa: F401  first: the engine's process settings (engine/__init__.py) before torch loads

# isort: split
import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks._machine import busy_cores, describe, load_line, matmul_peak, peak_memory, peaks
from benchmarks._precision import (
    clipasso_image_loss,
    gradient_parity,
    official_runtime,
    unscaled_fp16_share,
)
from bridge.params import ClipassoParams
from engine.clip.models import RN101, VIT_B32
from engine.io.image import load_image
from engine.methods.augment import random_augmentations
from engine.methods.clipasso import ClipassoRun, features, initial_strokes, optimise
from engine.preprocess import prepare_target
from engine.runtime import LOSS_SCALE_START, Runtime

IMAGE = Path(__file__).resolve().parent.parent / "examples" / "ballerina.png"
PAPER_ITERATIONS = 2000
FP16_BOUND = 0.7  # the cosine with fp64 a default precision must keep (docs/method.md#precision)


def timed(runtime: Runtime, target, params: ClipassoParams) -> tuple[float, float, ClipassoRun]:
    """(seconds per iteration, setup seconds, the run) of one run."""
    stamps = []
    run = optimise(
        runtime, target, params, lambda p: stamps.append(time.perf_counter()) if p.stage == "optimise" else None
    )
    per_it = statistics.median(b - a for a, b in zip(stamps[1:], stamps[2:]))  # skips warm-up step
    setup = run.seconds - per_it * run.iterations
    return per_it, setup, run


def sketch_iteration_flops(runtime: Runtime, views: int) -> float:
    """FLOPs of one sketch's iteration through CLIP: RN101 forward and backward (to the image) of its
    `views` images, counted by torch's flop counter (the rasteriser's share is negligible)."""
    images = torch.rand(views, 3, 224, 224, device=runtime.device, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        f = features(runtime, images)
        (f.layer2.float().mean() + f.layer3.float().mean() + f.embedding.float().mean()).backward()
    return float(counter.get_total_flops())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--iterations", type=int, default=4, help="timed iterations per configuration (>= 3)")
    parser.add_argument("--models", default="random", choices=("random", "tiny-random"), help="tiny-random: smoke")
    parser.add_argument("--skip-parity", action="store_true", help="no precision parity section")
    parser.add_argument("--parity-only", action="store_true", help="only the precision parity (e.g. --device mps)")
    parser.add_argument("--skip-bf16", action="store_true", help="no bf16 row")
    parser.add_argument(
        "--contention", action="store_true", help="only one sketch's iteration, as is and with every core kept busy"
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=".*random weights.*")
    ours = Runtime.create(args.device, args.models)
    target, _ = prepare_target(load_image(IMAGE), None)
    print(f"machine: {describe(ours.device)}")
    print(load_line("start"))
    if args.parity_only:
        precision_parity(ours, target)
        print(load_line("end", torch.get_num_threads()))
        return
    reference = official_runtime(ours.device, args.models)
    if args.contention:
        contention(ours, reference, target, max(3, args.iterations))
        print(load_line("end", torch.get_num_threads(), busy_loops=os.cpu_count() or 1))
        return
    memory: dict[str, list[float]] = {"reference": [], "ours": []}
    n = max(3, args.iterations)
    base = ClipassoParams(iterations=n, min_delta=0.0)  # min_delta 0: nothing stops early while timing
    dtype = ours.amp_dtype or torch.float32
    peak = matmul_peak(ours.device, dtype)
    flops = sketch_iteration_flops(ours, 1 + base.num_aug)
    print(
        f"ours: autocast {ours.amp_dtype or 'off (fp32)'}, aug bank {base.aug_bank}, channels-last; "
        f"reference: autocast {reference.amp_dtype or 'off (fp32)'}, augmentations recomputed, NCHW; "
        f"{n} timed iterations each"
    )
    print(
        f"peak: a {str(dtype).removeprefix('torch.')} 2048^3 matmul runs at {peak / 1e9:.0f} GFLOP/s here; "
        f"one sketch's iteration is {flops / 1e9:.1f} GFLOP of CLIP\n"
    )

    single = ClipassoParams(strokes=(16,), seeds=(0,), iterations=n, min_delta=0.0)
    with peak_memory(ours.device, memory["reference"]):
        ref_it, _, ref_run = timed(reference, target, dataclasses.replace(single, aug_bank=0))
    with peak_memory(ours.device, memory["ours"]):
        our_it, our_setup, our_run = timed(ours, target, single)
    ref_loss, our_loss = ref_run.levels[0].eval_loss, our_run.levels[0].eval_loss
    print("one 16-stroke sketch, one seed")
    print(f"  reference  {ref_it:7.3f} s/iteration")
    print(
        f"  ours       {our_it:7.3f} s/iteration   ({ref_it / our_it:.2f}x; bank built once in {our_setup:.1f} s; "
        f"{flops / our_it / peak:.0%} of the matmul peak; loss scale {our_run.loss_scale:g})"
    )
    bf16_text = ""
    if not args.skip_bf16:
        bf16 = Runtime.create(args.device, args.models, precision="bf16")
        bf16_it, _, bf16_run = timed(bf16, target, single)
        print(f"  ours, bf16 {bf16_it:7.3f} s/iteration   ({ref_it / bf16_it:.2f}x)")
        bf16_text = f", ours in bf16 {bf16_run.levels[0].eval_loss:.6g}"
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
        set_it, set_setup, set_run = timed(ours, target, base)
    set_wall = set_it * PAPER_ITERATIONS + set_setup
    sketches = len(base.strokes) * len(base.seeds)
    in_batch = set_it / sketches
    print(
        f"full set: {len(base.strokes)} levels {list(base.strokes)} x {len(base.seeds)} seeds, "
        f"projected to {PAPER_ITERATIONS} iterations"
    )
    print(
        f"  reference  {ref_wall:9.0f} s  ({sketches} runs one after another; s/iteration per level: "
        + ", ".join(f"{v:.3f}" for v in per_level)
        + ")"
    )
    print(
        f"  ours       {set_wall:9.0f} s  (one batch: {set_it:.3f} s/iteration for all {sketches} sketches, "
        f"{set_run.sketches_per_pass} per CLIP pass, loss scale {set_run.loss_scale:g}, "
        f"setup {set_setup:.1f} s)  -> {ref_wall / set_wall:.2f}x"
    )
    print(
        f"  per sketch: {in_batch:.3f} s/iteration in the batch vs {our_it:.3f} alone "
        f"({in_batch / our_it:.2f}x; goal <= 1.1x); the batch reaches {flops / in_batch / peak:.0%} of the matmul peak"
    )
    if line := peaks("full set (reference: its largest run)", memory):
        print(line)
    print(load_line("end", torch.get_num_threads()))


def contention(ours: Runtime, reference: Runtime, target, n: int) -> None:
    """One 16-stroke sketch's seconds per iteration as the machine is and at once again with a second
    process keeping every core busy (a designer's laptop running Inkscape and a browser), for ours and
    the reference in one run. The OpenMP spin count in the machine line is read when torch loads: run
    again with GOMP_SPINCOUNT=300000 (libgomp's own default) for the rows without the engine's."""
    single = ClipassoParams(strokes=(16,), seeds=(0,), iterations=n, min_delta=0.0)
    print(f"one 16-stroke sketch, {n} timed iterations; busy loops: {os.cpu_count()} processes (one per core)")
    print(f"{'':<12}{'as is s/it':>12}{'busy s/it':>12}{'slow-down':>11}")
    runs = (("reference", reference, dataclasses.replace(single, aug_bank=0)), ("ours", ours, single))
    for name, runtime, params in runs:
        as_is = timed(runtime, target, params)[0]
        with busy_cores():
            busy = timed(runtime, target, params)[0]
        print(f"{name:<12}{as_is:>12.3f}{busy:>12.3f}{busy / as_is:>10.2f}x", flush=True)


def precision_parity(runtime: Runtime, target) -> None:
    """Loss and image-gradient cosine of each precision against fp64, for the initial 16-stroke sketch,
    through the loss scale the optimisation uses (fp16); and whether fp16 without it keeps a gradient."""
    runtime.clip(RN101)  # both models loaded: the fp64 reference runs double copies of them
    runtime.clip(VIT_B32)
    target = target.to(runtime.device)
    points = initial_strokes(runtime, target, ClipassoParams(strokes=(16,), seeds=(0,)))
    sketch = runtime.rasterize(points.to(runtime.device), 1.5, (224, 224)).detach()
    augmentations = random_augmentations(4, 224, torch.Generator().manual_seed(0))
    print(
        f"precision parity on {runtime.device}, {runtime.models} models: one 16-stroke sketch against fp64 "
        f"(loss; cosine of the image gradient; fp16 with its loss scale, from {LOSS_SCALE_START:g})"
    )
    for label, augs in (("clean pair", None), ("clean + 4 augmentations", augmentations)):
        parity = gradient_parity(clipasso_image_loss(target, augs), runtime, sketch)
        cells = ", ".join(f"{p} {loss:.6g}; {cosine:.4f}" for p, (loss, cosine) in parity.items())
        print(f"  {label:<24} {cells}")
        if label == "clean pair":
            fp16 = parity["fp16"][1]
            kept = unscaled_fp16_share(clipasso_image_loss(target, augs), runtime, sketch)
    print(
        f"  fp16 clean-pair cosine {fp16:.4f} ({'>=' if fp16 >= FP16_BOUND else 'BELOW'} the {FP16_BOUND} bound "
        f"for a default precision); without a loss scale fp16 keeps {kept:.1%} of the gradient's "
        f"elements non-zero\n"
    )


if __name__ == "__main__":
    main()
