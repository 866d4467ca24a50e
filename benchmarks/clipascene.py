"""CLIPascene speed: the full default matrix, ours (one batch) vs a reference shaped like the official
code (every part x layer x seed on its own, one after another), measured side by side in one run.

Default matrix: object + background, layers 2, 8, 11, 2 seeds, 64 strokes, the fidelity row
(1000 / 600 object, 1500 background iterations) and 8 simplified rows of 400 iterations.
Real-size ViT-B/32 with random weights (timing does not depend on the weights). A few iterations of
each stage are timed and projected to the full counts.

Ours: all 12 problems in one batch, augmentation bank, `--precision auto` (the official code's
arithmetic: fp32 on a CPU, fp16 on CUDA), the weighted total's gradient summed from the term
gradients (no extra backward pass). Reference: our code on one problem at a time, the same
arithmetic, target augmentations recomputed every step. It still skips the official code's extra
backward pass per iteration, so the real official code is slower than this reference.
Precision parity: the fidelity loss of one sketch at each default layer, and its image gradient, in
each precision against fp64, with 4 augmentations.

Run: python benchmarks/clipascene.py [--device cuda] [--iterations 3] [--models tiny-random --skip-parity]
(the last two: a quick smoke run of the script itself, as benchmarks/gpu.sh --smoke does)
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
import engine  # noqa: F401  first: the engine's process settings (engine/__init__.py) before torch loads

# isort: split
import torch

from benchmarks._machine import describe, peak_memory, peaks
from benchmarks._precision import fidelity_image_loss, gradient_parity, official_runtime
from bridge.params import ClipassoParams, SceneParams
from engine.cli.options import int_list
from engine.clip.models import VIT_B32
from engine.io.image import load_image, load_mask
from engine.methods.augment import random_augmentations
from engine.methods.clipascene import BACKGROUND, OBJECT, SceneTarget, optimise_scene
from engine.methods.clipasso import initial_strokes
from engine.preprocess import prepare_target
from engine.runtime import Runtime
from engine.scene.inpaint import filler
from engine.scene.split import split_scene

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def stage_times(runtime: Runtime, targets: list[SceneTarget], params: SceneParams) -> tuple[float, float, float]:
    """(s/iteration of the fidelity stage, of a simplified row, total seconds) for a capped run."""
    stamps: dict[bool, list[float]] = {False: [], True: []}

    def record(p):
        if p.stage == "optimise":  # SceneClock.row_name: "fidelity row 0/L ...", then "simplicity r/L ..."
            stamps[not p.detail.startswith("fidelity row")].append(time.perf_counter())

    run = optimise_scene(runtime, targets, params, record)
    # The first iterations of each stage include oneDNN's kernel set-up for new shapes: skip two.
    fidelity, simplicity = (
        statistics.median(b - a for a, b in zip(s[2:], s[3:])) if len(s) > 3 else float("nan")
        for s in (stamps[False], stamps[True])
    )
    return fidelity, simplicity, run.seconds


def fidelity_iterations(p: SceneParams, part: str, layer: int) -> int:
    if part == BACKGROUND:
        return p.fidelity_iterations_background
    return p.fidelity_iterations_object_shallow if layer < 8 else p.fidelity_iterations_object


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--iterations", type=int, default=5, help="iterations per stage, the first 2 untimed (>= 4)")
    parser.add_argument("--models", default="random", choices=("random", "tiny-random"), help="tiny-random: smoke")
    parser.add_argument("--skip-parity", action="store_true", help="no precision parity section")
    parser.add_argument(
        "--layers",
        type=int_list,
        default=SceneParams().layers,
        help="fidelity columns (default: 2,8,11; others only for a smoke run: the projection of ours assumes them)",
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=".*random weights.*")
    ours = Runtime.create(args.device, args.models)
    reference = official_runtime(ours.device, args.models)
    memory: dict[str, list[float]] = {"reference": [], "ours": []}
    image = load_image(EXAMPLES / "ballerina.png")
    mask, _ = load_mask(EXAMPLES / "ballerina_mask.png", image.size)
    split = split_scene(image, mask, filler("lama", args.models))  # random models: LaMa's tiny stand-in
    parts = {
        OBJECT: prepare_target(split.object_image, None)[0],
        BACKGROUND: prepare_target(split.background_image, None)[0],
    }
    full = SceneParams(layers=args.layers)
    n = max(4, args.iterations)
    timed = dataclasses.replace(full, iterations=n, levels=1)
    print(f"machine: {describe(ours.device)}")
    print(
        f"ours: autocast {ours.amp_dtype or 'off (fp32)'}, aug bank {full.aug_bank}, 12 problems in one batch; "
        f"reference: autocast {reference.amp_dtype or 'off (fp32)'}, augmentations recomputed, one problem at a "
        f"time; {n - 2} timed iterations per stage\n"
    )

    # Reference: every part x layer alone (one seed; seeds run one after another, so x 2 in the total).
    ref_total, ref_iterations = 0.0, 0
    print("reference, one problem at a time (s/iteration: fidelity, simplified row)")
    for part, target in parts.items():
        for layer in full.layers:
            with peak_memory(ours.device, memory["reference"]):
                fid, simp, _ = stage_times(
                    reference,
                    [SceneTarget(part, target)],
                    dataclasses.replace(timed, layers=(layer,), seeds=(0,), aug_bank=0),
                )
            its_fid = fidelity_iterations(full, part, layer) + 1
            its_simp = full.levels * (full.simplicity_iterations + 1)
            ref_total += len(full.seeds) * (its_fid * fid + its_simp * simp)
            ref_iterations += len(full.seeds) * (its_fid + its_simp)
            print(f"  {part:>10} layer {layer:>2}: {fid:6.3f}  {simp:6.3f}")

    # Ours: the whole matrix in one batch; the fidelity batch shrinks as object columns finish.
    targets = [SceneTarget(name, t) for name, t in parts.items()]
    with peak_memory(ours.device, memory["ours"]):
        fid12, simp12, seconds = stage_times(ours, targets, timed)
    fid6, _, _ = stage_times(ours, [targets[1]], dataclasses.replace(timed, levels=0))  # background only
    fid10 = fid6 + (fid12 - fid6) * 4 / 6  # 10 problems: interpolated between 6 and 12
    setup = seconds - (n + 1) * (fid12 + simp12)
    ours_total = (
        601 * fid12 + 400 * fid10 + 500 * fid6 + full.levels * (full.simplicity_iterations + 1) * simp12 + setup
    )
    ours_iterations = sum(
        len(full.seeds) * (fidelity_iterations(full, p, layer) + 1 + full.levels * 401)
        for p in parts
        for layer in full.layers
    )
    print(
        f"\nours, one batch of 12 problems: fidelity {fid12:.3f} s/iteration (6 background problems "
        f"{fid6:.3f}), simplified row {simp12:.3f} s/iteration, setup {setup:.1f} s"
    )
    print("\nfull default matrix (2 parts x 3 layers x 9 rows, 2 seeds), projected:")
    print(f"  reference  {ref_total:9.0f} s  ({ref_iterations / ref_total:.2f} problem-iterations/s)")
    print(
        f"  ours       {ours_total:9.0f} s  ({ours_iterations / ours_total:.2f} problem-iterations/s)"
        f"  -> {ref_total / ours_total:.1f}x"
    )
    if line := peaks("(reference: its largest problem)", memory):
        print(line)
    if not args.skip_parity:
        precision_parity(ours, parts[OBJECT], full.layers)


def precision_parity(runtime: Runtime, target, layers: tuple[int, ...]) -> None:
    """Fidelity loss and image-gradient cosine of each precision against fp64, for the object's
    initial 64-stroke sketch (as MLP_loc starts it) and 4 augmentations."""
    runtime.clip(VIT_B32)  # loaded: the fp64 reference runs a double copy of it
    target = target.to(runtime.device)
    points = initial_strokes(runtime, target, ClipassoParams(strokes=(64,), seeds=(0,)))
    sketch = runtime.rasterize(points.to(runtime.device), 1.5, (224, 224)).detach()
    augmentations = random_augmentations(4, 224, torch.Generator().manual_seed(0))
    print("\nprecision parity, the object's initial sketch, 4 augmentations, against fp64 (loss; gradient cosine)")
    for layer in layers:
        parity = gradient_parity(fidelity_image_loss(target, augmentations, layer), runtime, sketch)
        cells = ", ".join(f"{p} {loss:.6g}; {cosine:.4f}" for p, (loss, cosine) in parity.items())
        print(f"  layer {layer:>2}: {cells}")


if __name__ == "__main__":
    main()
