"""Time to a usable sketch: how fast CLIPasso's clean eval loss approaches its final value.

Runs a CLIPasso job (default: the default 4 levels x 3 seeds) to its iteration cap with the stop rule
off and records, at every eval, the mean over its sketches of the best clean eval loss so far. Prints
the iterations by which that mean has made 90 % and 99 % of its total decrease, and their shares of
the cap: the figure behind the "about" of the time estimates (`bridge.estimates.USABLE_ITERATIONS`). Nothing in the
optimisation depends on the cap (no schedule), so a job capped at C runs the first C iterations of
this one: the figures are printed for every preset's cap (--caps) as the run passes it, and for
the whole run at its end. Real-size random models by default (calibrated: engine.clip.calibrate);
with OpenAI's weights (--models openai) it measures what a designer sees.

Run: python benchmarks/convergence.py [--device cuda] [--models openai] [--iterations 2000]
     [--strokes 32,16,8,4] [--seeds 0,1000,2000] [--caps 500,1000,2000]
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import engine  # noqa: F401  first: the engine's process settings (engine/__init__.py) before torch loads

# isort: split
import torch

from benchmarks._machine import describe, load_line
from bridge.params import ClipassoParams
from engine.io.image import load_image
from engine.methods.clipasso import optimise
from engine.preprocess import prepare_target
from engine.runtime import Runtime

IMAGE = Path(__file__).resolve().parent.parent / "examples" / "ballerina.png"
# The Object Sketch presets' iteration caps (inkscape_ext/sketch_object.py, QUALITY: fast, standard, paper).
PRESET_CAPS = "500,1000,2000"


def share_reached(curve: list[tuple[int, float]], share: float) -> int:
    """The first iteration at which the loss has made `share` of its total decrease along `curve`
    [(iteration, loss), ...] (the loss is a best-so-far, so it never rises)."""
    first, last = curve[0][1], curve[-1][1]
    goal = first - share * (first - last)
    return next(it for it, loss in curve if loss <= goal)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--models", default="random", choices=("random", "openai", "tiny-random"), help="tiny: smoke")
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--strokes", default="32,16,8,4")
    parser.add_argument("--seeds", default="0,1000,2000")
    parser.add_argument("--caps", default=PRESET_CAPS, help="iteration caps to report as the run passes them")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=".*random weights.*")
    runtime = Runtime.create(args.device, args.models)
    params = ClipassoParams(
        strokes=tuple(int(v) for v in args.strokes.split(",")),
        seeds=tuple(int(v) for v in args.seeds.split(",")),
        iterations=args.iterations,
        min_delta=0.0,  # the stop rule off: the whole curve
    ).validate()
    target, _ = prepare_target(load_image(IMAGE), None)
    print(f"machine: {describe(runtime.device)}")
    print(load_line("start"))
    caps = sorted(int(v) for v in args.caps.split(",") if v and int(v) < args.iterations)
    curve: list[tuple[int, float]] = []
    started = time.perf_counter()

    def record(p) -> None:
        if p.stage == "optimise" and (p.iteration - 1) % params.eval_every == 0 and p.loss is not None:
            curve.append((p.iteration - 1, p.loss))
            if len(curve) % 10 == 1:
                print(f"  iteration {p.iteration - 1}: mean best eval loss {p.loss:.6g}", flush=True)
        if p.stage == "optimise" and caps and p.iteration == caps[0]:
            print(summary(curve, caps.pop(0), time.perf_counter() - started), flush=True)

    signal.signal(signal.SIGINT, signal.default_int_handler)  # also where started in the background
    try:
        run = optimise(runtime, target, params, record)
    except KeyboardInterrupt:  # a long run stopped early (Ctrl-C, kill -INT) still reports its curve so far
        ran = curve[-1][0] + params.eval_every
        print(load_line("end", torch.get_num_threads()))
        print(f"stopped at iteration {ran}: the figures for a job capped there")
        print(summary(curve, ran, time.perf_counter() - started))
        return
    print(load_line("end", torch.get_num_threads()))
    print(
        f"{len(params.strokes)} levels {list(params.strokes)} x {len(params.seeds)} seeds, {args.models} models, "
        f"{run.iterations} iterations in {time.perf_counter() - started:.0f} s "
        f"({run.sketches_per_pass} sketches per pass, loss scale {run.loss_scale:g})"
    )
    print(summary(curve, args.iterations, time.perf_counter() - started))


def summary(curve: list[tuple[int, float]], cap: int, seconds: float) -> str:
    """The 90 % and 99 % points of `curve` (evals up to `cap`) as iterations and shares of `cap`."""
    shares = [(share, share_reached(curve, share)) for share in (0.9, 0.99)]
    first, last = curve[0], curve[-1]
    reached = "; ".join(
        f"{share:.0%} of the decrease by iteration {it} ({it / cap:.1%} of the cap)" for share, it in shares
    )
    loss = f"eval loss {first[1]:.6g} at iteration 0 -> {last[1]:.6g} at {last[0]}"
    return f"cap {cap} ({seconds:.0f} s in): {loss}; {reached}"


if __name__ == "__main__":
    main()
