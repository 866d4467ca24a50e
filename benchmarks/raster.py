"""Rasteriser speed and memory: ours vs a naive dense renderer (every pixel against every segment),
and vs diffvg (the official code's renderer) when pydiffvg is installed.

Forward + backward at 224 x 224, half-width 1.5, strokes shaped like CLIPasso's initialisation
(a random walk of 3 steps of up to 5.6 px) and like optimised strokes (steps of up to 30 px).
Memory = bytes autograd saves for backward. --threads 1,2 repeats the table at each CPU thread count.
--contention measures, in one run, how each renderer degrades when a second process keeps every core
busy: each configuration (thread counts of the process and of our rasteriser) is timed as the
machine is, then at once again with busy-loop processes on all cores (started and stopped by the
script), and the slow-downs are printed side by side, each the mean over a window of back-to-back
calls (--window), under a fair-share row: a single-threaded loop that touches no memory, whose
slow-down is what the scheduler gives any one thread. The OpenMP spin count (machine line) is the
engine's; GOMP_SPINCOUNT=300000 in the environment gives libgomp's own default.
Run: python benchmarks/raster.py [--device cuda] [--threads 1,2] [--contention [--window 3]]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import engine  # noqa: F401  first: the engine's process settings (engine/__init__.py) before torch loads

# isort: split
import torch

from benchmarks._machine import busy_cores, describe, load_line
from engine.methods.init import random_walk
from engine.render import band_coverage, diffvg, rasterize
from engine.render import raster as ours_module
from engine.render.bezier import sample_polyline

SIZE = (224, 224)


def naive_rasterize(points: torch.Tensor, half_width: float, size=SIZE, segments: int = 16) -> torch.Tensor:
    """The same image model as ours, computed densely: (B, n, S, H*W) distances under autograd."""
    B = points.shape[0]
    H, W = size
    poly = sample_polyline(points, segments)  # (B, n, S + 1, 2)
    a, ab = poly[:, :, :-1], poly[:, :, 1:] - poly[:, :, :-1]  # (B, n, S, 2)
    ys, xs = torch.meshgrid(
        torch.arange(H, device=points.device) + 0.5, torch.arange(W, device=points.device) + 0.5, indexing="ij"
    )
    p = torch.stack([xs.reshape(-1), ys.reshape(-1)], -1)  # (HW, 2)
    ap = p[None, None, None] - a[..., None, :]  # (B, n, S, HW, 2)
    t = ((ap * ab[..., None, :]).sum(-1) / (ab * ab).sum(-1, keepdim=True).clamp(min=1e-12)).clamp(0, 1)
    d = (ap - t[..., None] * ab[..., None, :]).square().sum(-1).clamp(min=1e-12).sqrt().amin(dim=2)
    image = (1 - band_coverage(d, torch.tensor(half_width))).prod(dim=1)  # (B, HW)
    return image.view(B, 1, H, W).expand(B, 3, H, W)


def strokes(batch: int, n: int, step: float, device, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    start = torch.rand(batch * n, 2, generator=g) * 224
    return random_walk(start, 4, step, g).view(batch, n, 4, 2).to(device)


def measure(render, points, repeats: int) -> tuple[float, int]:
    """Median seconds of forward + backward, and bytes saved for backward."""
    saved = 0

    def pack(t):
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    times = []
    for i in range(repeats + 1):
        pts = points.clone().requires_grad_()
        saved = 0
        _sync(pts.device)
        start = time.perf_counter()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            image = render(pts, 1.5)
        image.mean().backward()
        _sync(pts.device)
        if i:  # the first run warms up allocators and kernels
            times.append(time.perf_counter() - start)
    return statistics.median(times), saved


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


# The naive renderer saves ~2 GB per 64-stroke sketch for backward: it runs on single sketches only.
CASES = [(1, 16, 5.6), (1, 64, 5.6), (1, 64, 30.0), (12, 16, 5.6), (12, 64, 5.6)]


def _cases(text: str) -> list[tuple[int, int, float]]:
    try:
        cases = []
        for case in text.split(","):
            shape, _, step = case.partition("@")
            batch, n = shape.split("x")
            cases.append((int(batch), int(n), float(step or 5.6)))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected BATCHxSTROKES[@STEP],..., got {text!r}") from None
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(
        "--cases",
        type=_cases,
        default=CASES,
        help="BATCHxSTROKES[@STEP],... (default: 1x16,1x64,1x64@30,12x16,12x64; steps <= 5.6 px unless @STEP)",
    )
    parser.add_argument("--threads", default="", help="CPU thread counts to repeat the table at, e.g. 1,2")
    parser.add_argument(
        "--contention", action="store_true", help="slow-downs with every core kept busy by a second process (CPU)"
    )
    parser.add_argument("--window", type=float, default=3.0, help="--contention: seconds of calls per configuration")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"machine: {describe(device)}")
    print(load_line("start"))
    if args.contention:
        contention(args.cases if args.cases is not CASES else CONTENTION_CASES, args.window)
        print(load_line("end", torch.get_num_threads(), busy_loops=os.cpu_count() or 1))
        return
    for threads in [int(v) for v in args.threads.split(",") if v] or [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        print(f"{threads} torch thread(s)")
        table(args, device)
    print(load_line("end", torch.get_num_threads()))


def table(args, device) -> None:
    print(
        f"{'case':<36}{'ours ms':>9}{'per sketch':>11}{'naive ms':>10}{'speed-up':>10}{'ours MiB':>10}{'naive MiB':>11}"
    )
    for batch, n, step in args.cases:
        pts = strokes(batch, n, step, device)
        ours, ours_mem = measure(rasterize, pts, args.repeats)
        label = f"{batch} x {n} strokes, steps <= {step:g} px"
        row = f"{label:<36}{ours * 1e3:>9.2f}{ours * 1e3 / batch:>11.2f}"
        if batch == 1:
            naive, naive_mem = measure(naive_rasterize, pts, 3)
            row += f"{naive * 1e3:>10.1f}{naive / ours:>9.0f}x{ours_mem / 2**20:>10.1f}{naive_mem / 2**20:>11.0f}"
        else:
            row += f"{'-':>10}{'-':>10}{ours_mem / 2**20:>10.1f}{'-':>11}"
        if diffvg.available():
            official, _ = measure(diffvg.rasterize, pts, 3)
            row += f"   diffvg {official * 1e3:.1f} ms ({official / ours:.1f}x ours)"
        print(row)
    if not diffvg.available():
        print("diffvg: not installed here (pydiffvg), so no diffvg column")


# The naive renderer's cases (single sketches) and the batch CLIPasso runs on a CPU (one per CLIP pass).
CONTENTION_CASES = [(1, 16, 5.6), (1, 64, 5.6)]
# (label, torch threads of the process, our rasteriser's CPU_THREADS; None: the naive renderer)
CONFIGURATIONS = [
    ("ours, process on 1 thread", 1, 1),
    ("ours, 2 threads", 2, 2),
    ("ours on 1 in a 2-thread process", 2, 1),
    ("naive, 1 thread", 1, None),
    ("naive, 2 threads", 2, None),
]


def per_call(render, points, window_s: float = 3.0, min_runs: int = 3) -> float:
    """Mean seconds of forward + backward over a window of back-to-back calls: the throughput an
    optimisation loop gets. A median of short calls would hide the calls a busy core preempts."""
    render(points.clone().requires_grad_(), 1.5).mean().backward()  # warm-up
    runs, start = 0, time.perf_counter()
    while runs < min_runs or time.perf_counter() - start < window_s:
        render(points.clone().requires_grad_(), 1.5).mean().backward()
        runs += 1
    return (time.perf_counter() - start) / runs


def arithmetic(points, half_width):
    """The fair-share row: single-threaded interpreter arithmetic that touches no memory, so its
    slow-down is only the share of a core the scheduler gives one thread against the busy loops."""
    total = 0
    for i in range(200_000):
        total += i * i
    return points.sum() * 0 + total * 0


def contention(cases, window_s: float) -> None:
    """Each configuration's time as the machine is and with every core busy, measured back to back
    so that the other load on a shared machine drifts as little as possible between the two."""
    print(f"niceness {os.nice(0)}; busy loops: {os.cpu_count()} processes (one per core), same niceness")
    print(f"mean over >= {window_s:g} s of back-to-back forward + backward calls per configuration")
    print(f"{'case':<32}{'configuration':<34}{'as is ms':>10}{'busy ms':>10}{'slow-down':>11}")
    default_threads = ours_module.CPU_THREADS

    def row(label: str, name: str, render, pts) -> None:
        as_is = per_call(render, pts, window_s)
        with busy_cores():
            busy = per_call(render, pts, window_s)
        print(f"{label:<32}{name:<34}{as_is * 1e3:>10.1f}{busy * 1e3:>10.1f}{busy / as_is:>10.1f}x", flush=True)

    try:
        torch.set_num_threads(1)
        row("fair share (no memory)", "arithmetic loop, 1 thread", arithmetic, torch.zeros(1))
        for batch, n, step in cases:
            pts = strokes(batch, n, step, torch.device("cpu"))
            label = f"{batch} x {n} strokes, <= {step:g} px"
            for name, threads, ours_threads in CONFIGURATIONS:
                torch.set_num_threads(threads)
                ours_module.CPU_THREADS = ours_threads or default_threads
                row(label, name, rasterize if ours_threads else naive_rasterize, pts)
    finally:
        ours_module.CPU_THREADS = default_threads


if __name__ == "__main__":
    main()
