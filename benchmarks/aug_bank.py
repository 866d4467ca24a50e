"""Does the augmentation bank change where a sketch ends up? Bank vs fresh augmentations, side by side.

The same sketches (same target, same seeds, so the same start strokes and networks) run N fidelity
iterations of CLIPascene twice: once drawing the target's augmentations from a precomputed bank of
`--bank` (the engine's speed-up), once with fresh augmentations every step (the official code).
Compared per seed: the final clean eval loss (the sketch against the target, no augmentation, at
the last iteration) and the strokes' travel (mean distance, canvas px, that control points moved
from their start), plus how far the two runs' final strokes lie apart.
Real-size ViT-B/32 with random weights: the loss landscape is CLIP-sized, not CLIP-shaped.

Run: nice python benchmarks/aug_bank.py [--iterations 300] [--seeds 0,1000,2000] [--strokes 16]
     [--layer 4] [--bank 128] [--models random]
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

from benchmarks._machine import describe
from bridge.params import SceneParams
from engine.cli.options import int_list
from engine.io.image import load_image
from engine.methods.clipascene import BACKGROUND, SceneTarget, optimise_scene
from engine.preprocess import prepare_target
from engine.runtime import Runtime

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def final_strokes(runtime: Runtime, target: SceneTarget, params: SceneParams) -> tuple[torch.Tensor, float, float]:
    """(points (n, k, 2) canvas px at the last iteration, their clean loss, seconds)."""
    run = optimise_scene(runtime, [target], params)
    cell = run.columns[0].cells[0]
    return cell.points, next(iter(cell.losses.values())), run.seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--seeds", type=int_list, default=(0, 1000, 2000))
    ap.add_argument("--strokes", type=int, default=16)
    ap.add_argument("--layer", type=int, default=4)
    ap.add_argument("--bank", type=int, default=128)
    ap.add_argument("--models", default="random")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    runtime = Runtime.create(device="cpu", models=args.models)
    print(describe("cpu"))
    image = load_image(EXAMPLES / "ballerina.png")
    target = SceneTarget(BACKGROUND, prepare_target(image, None)[0])
    # One eval, at the last iteration: the loss reported is the final sketch's clean loss.
    base = SceneParams(
        layers=(args.layer,),
        levels=0,
        strokes=args.strokes,
        fidelity_iterations_background=args.iterations,
        fidelity_eval_every=args.iterations,
        fidelity_eval_from=args.iterations,
    ).validate()
    print(
        f"{args.strokes} strokes, ViT-B/32 layer {args.layer}, {args.iterations} iterations, "
        f"{base.num_aug} augmentations per step, models {args.models}; bank of {args.bank} vs fresh"
    )
    rows = []
    for seed in args.seeds:
        start, _, _ = final_strokes(
            runtime, target, dataclasses.replace(base, seeds=(seed,), fidelity_iterations_background=1, aug_bank=0)
        )
        results = {}
        for name, bank in (("bank", args.bank), ("fresh", 0)):
            params = dataclasses.replace(base, seeds=(seed,), aug_bank=bank)
            points, loss, seconds = final_strokes(runtime, target, params)
            travel = float((points - start).norm(dim=-1).mean())
            results[name] = (points, loss, travel, seconds)
            print(f"seed {seed:>5} {name:>5}: final clean loss {loss:.5f}  travel {travel:6.2f} px  {seconds:6.1f} s")
        apart = float((results["bank"][0] - results["fresh"][0]).norm(dim=-1).mean())
        print(f"seed {seed:>5}: bank and fresh final strokes {apart:.2f} px apart", flush=True)
        rows.append((results["bank"][1], results["fresh"][1], results["bank"][2], results["fresh"][2]))
    bank_loss, fresh_loss, bank_travel, fresh_travel = (list(c) for c in zip(*rows))
    gap = statistics.mean(bank_loss) - statistics.mean(fresh_loss)
    print(
        f"mean over {len(rows)} seeds: loss bank {statistics.mean(bank_loss):.5f} fresh "
        f"{statistics.mean(fresh_loss):.5f} (bank - fresh {gap:+.5f}, "
        f"seed spread {statistics.pstdev(fresh_loss):.5f}); "
        f"travel bank {statistics.mean(bank_travel):.2f} px fresh {statistics.mean(fresh_travel):.2f} px"
    )
    print(f"finished {time.strftime('%H:%M:%S')}")


if __name__ == "__main__":
    main()
