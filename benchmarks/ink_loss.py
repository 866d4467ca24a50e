"""Ink's effect on the loss: the CLIP eval loss of the same frozen strokes drawn with the pen's one
width and with the ink stage's widths (engine/methods/ink.py), side by side, for a few seeds.

The strokes are each seed's CLIPasso start (saliency x XDoG sampling) optionally followed by
`--stroke-iterations` of CLIPasso's own optimisation; the ink stage then runs `--ink-iterations`.
The control column draws the same strokes with one uniform width at the ink's mean knot width: more
ink alone, without a profile. Measures loss, not time. With --models random (real-size random
weights) the numbers say what the optimiser achieves on that network, not what a user's sketch gains
with the real CLIP weights.

    .venv/bin/python benchmarks/ink_loss.py --models random --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import engine  # noqa: F401  first: the engine's process settings (engine/__init__.py) before torch loads

# isort: split
import torch

from benchmarks._machine import describe
from bridge.params import ClipassoParams
from engine.io.image import load_image
from engine.methods.clipasso import descend, eval_loss, initial_strokes
from engine.methods.ink import InkParams, optimise_ink
from engine.preprocess import prepare_target
from engine.runtime import Runtime

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="random", choices=("random", "tiny-random", "openai"))
    parser.add_argument("--image", default=str(ROOT / "tests" / "data" / "animal.png"))
    parser.add_argument("--strokes", type=int, default=16)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--stroke-iterations", type=int, default=0)
    parser.add_argument("--ink-iterations", type=int, default=InkParams.iterations)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    runtime = Runtime.create(args.device, args.models)
    target, _ = prepare_target(load_image(args.image), None)
    print(f"machine: {describe(runtime.device)}; load average {os.getloadavg()[0]:.1f}")
    print(f"models: {args.models}; {args.strokes} strokes; image {Path(args.image).name}")
    print(f"stroke iterations {args.stroke_iterations}, ink iterations {args.ink_iterations}")
    print("seed  pen loss  ink loss  change  | wider pen: loss  change  | knot half-widths (x pen): min  mean  max")
    for seed in (int(s) for s in args.seeds.split(",")):
        params = ClipassoParams(strokes=(args.strokes,), seeds=(seed,), iterations=max(1, args.stroke_iterations))
        points = initial_strokes(runtime, target.to(runtime.device), params)  # (1, n, 4, 2)
        if args.stroke_iterations:
            points = descend(runtime, target.to(runtime.device), points, params, params.half_width).points
        ink = dataclasses.replace(InkParams(), iterations=args.ink_iterations, seed=seed)
        result = optimise_ink(runtime, target, points, params.half_width, ink)
        pen, inked = float(result.pen_loss[0]), float(result.ink_loss[0])
        scale = result.half_widths / params.half_width
        # Control: one uniform width with as much ink as the ink stage's mean, to tell width profile from amount.
        wider = float(eval_loss(runtime, target, points, params.half_width * float(scale.mean()))[0])
        print(
            f"{seed:>4}  {pen:8.4g}  {inked:8.4g}  {100 * (inked - pen) / pen:+5.1f}%  "
            f"| {wider:8.4g}  {100 * (wider - pen) / pen:+5.1f}%  "
            f"| {float(scale.min()):.2f}  {float(scale.mean()):.2f}  {float(scale.max()):.2f}"
        )


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
