"""A job's memory: engine.budget's estimate next to the measured peak, for the jobs it must judge.

Each job runs in a fresh process (so that its peak is its own): the models are loaded, the process's
resident memory is read, the job runs for `--iterations` steps, and the peak (VmHWM on Linux, or
torch.cuda.max_memory_allocated on CUDA) minus the memory before is the job's measured peak. The
estimate must not be below it (a job that does not fit would be let through) and should not be far
above it (a job that fits would be refused). Slow on a CPU with real-size models (a minute a job).

Run: python benchmarks/memory.py [--models random] [--device cpu] [--iterations 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

IMAGE = ROOT / "tests" / "data" / "animal.png"
SCENE_IMAGE, SCENE_MASK = ROOT / "tests" / "data" / "field.png", ROOT / "tests" / "data" / "field_mask.png"
JOBS = {  # name: (kind, levels, seeds, strokes of the first level, augmentation bank)
    "1 sketch x 16 strokes": ("sketch", 1, 1, 16, 4),
    "2 sketches x 16": ("sketch", 1, 2, 16, 4),
    "4 sketches x 16": ("sketch", 2, 2, 16, 4),
    "4 sketches x ~1000": ("sketch", 4, 1, 1024, 4),
    "16 sketches x ~1000": ("sketch", 4, 4, 1024, 4),
    "scene: 1 part x 1 layer x 1 seed": ("scene", 0, 1, 64, 4),
}
LARGE = {"16 sketches x ~1000"}  # ~13 GiB with real-size models: only on request (--jobs)

CHILD = r"""
import json, sys, warnings
warnings.simplefilter("ignore")
from pathlib import Path
import torch
from bridge.params import ClipassoParams, SceneParams, SceneRequest, SketchRequest
from engine import budget
from engine.clip.models import RN101, VIT_B32
from engine.jobs import run_scene, run_sketch
from engine.runtime import Runtime

models, device, iterations, kind, levels, seeds, strokes, bank, image, mask = sys.argv[1:]
levels, seeds, strokes, bank, iterations = int(levels), int(seeds), int(strokes), int(bank), int(iterations)
runtime = Runtime.create(device, models)
runtime.load(RN101, VIT_B32)
if kind == "sketch":
    params = ClipassoParams(
        strokes=tuple(strokes - 8 * i for i in range(levels)), seeds=tuple(1000 * i for i in range(seeds)),
        iterations=iterations, aug_bank=bank,
    )
    request, run = SketchRequest(image, params), run_sketch
else:
    params = SceneParams(layers=(8,), levels=1, strokes=strokes, seeds=(0,), iterations=iterations, aug_bank=bank)
    request, run = SceneRequest(image, params, mask="none"), run_scene
estimate = budget.estimate(runtime, kind, request).total  # measures the model's footprint first

def resident():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024

cuda = runtime.device.type == "cuda"
if cuda:
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); before = torch.cuda.memory_allocated()
else:
    before = resident()
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS, so the peak read below is this job's
run(runtime, request)
if cuda:
    torch.cuda.synchronize(); peak = torch.cuda.max_memory_allocated() - before
else:
    peak = next(int(l.split()[1]) * 1024 for l in Path("/proc/self/status").read_text().splitlines()
                if l.startswith("VmHWM:")) - before
print(json.dumps({"estimate": estimate, "peak": peak}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="random", help="random (real size, default) or tiny-random")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument(
        "--jobs",
        default=",".join(name for name in JOBS if name not in LARGE),
        help=f"comma-separated names from JOBS (default: all but {', '.join(LARGE)})",
    )
    args = parser.parse_args()

    from benchmarks._machine import describe

    print(f"machine: {describe(args.device)}")
    print(f"models: {args.models}, {args.iterations} iterations a job; MiB\n")
    print(f"{'job':<36} {'estimate':>9} {'measured':>9} {'ratio':>6}")
    for name in args.jobs.split(","):
        kind, levels, seeds, strokes, bank = JOBS[name]
        image, mask = (IMAGE, "none") if kind == "sketch" else (SCENE_IMAGE, SCENE_MASK)
        command = [sys.executable, "-c", CHILD, args.models, args.device, str(args.iterations), kind]
        command += [str(v) for v in (levels, seeds, strokes, bank, image, mask)]
        out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if out.returncode:
            print(f"{name:<36} failed: {out.stderr.strip().splitlines()[-1]}")
            continue
        result = json.loads(out.stdout.strip().splitlines()[-1])
        estimate, peak = result["estimate"] / 2**20, result["peak"] / 2**20
        print(f"{name:<36} {estimate:>9.0f} {peak:>9.0f} {estimate / peak:>6.2f}")


if __name__ == "__main__":
    main()
