"""Rasteriser speed and memory: ours vs a naive dense renderer (every pixel against every segment),
and vs diffvg (the official code's renderer) when pydiffvg is installed.

Forward + backward at 224 x 224, half-width 1.5, strokes shaped like CLIPasso's initialisation
(a random walk of 3 steps of up to 5.6 px) and like optimised strokes (steps of up to 30 px).
Memory = bytes autograd saves for backward. --threads 1,2 repeats the table at each CPU thread count.
--contention measures, in one run, how each renderer degrades when a second process keeps every core
busy: each configuration (thread counts of the process and of our rasteriser) is timed as the
machine is, then at once again with busy-loop processes on all cores (started and stopped by the
script), and the slow-downs are printed side by side.
Run: python benchmarks/raster.py [--device cuda] [--threads 1,2] [--contention]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._machine import describe, load_line
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
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"machine: {describe(device)}")
    print(load_line("start"))
    if args.contention:
        contention(args.cases if args.cases is not CASES else CONTENTION_CASES, args.repeats)
        print(load_line("end", torch.get_num_threads()))
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


@contextlib.contextmanager
def busy_cores():
    """A second process keeping every core busy: one busy-loop Python process per core, at this
    process's niceness (they inherit it), stopped on leaving; each also ends by itself once this
    process is gone (killed by a timeout, say), so none outlives the benchmark."""
    loop = "import os\nparent = os.getppid()\nwhile os.getppid() == parent: pass"
    loops = [subprocess.Popen([sys.executable, "-c", loop]) for _ in range(os.cpu_count() or 1)]
    try:
        time.sleep(1.0)  # let them start and take their cores
        yield
    finally:
        for busy in loops:
            busy.kill()
        for busy in loops:
            busy.wait()


def contention(cases, repeats: int) -> None:
    """Each configuration's time as the machine is and with every core busy, measured back to back
    so that the other load on a shared machine drifts as little as possible between the two."""
    print(f"niceness {os.nice(0)}; busy loops: {os.cpu_count()} processes (one per core), same niceness")
    print(f"{'case':<32}{'configuration':<34}{'as is ms':>10}{'busy ms':>10}{'slow-down':>11}")
    default_threads = ours_module.CPU_THREADS
    try:
        for batch, n, step in cases:
            pts = strokes(batch, n, step, torch.device("cpu"))
            label = f"{batch} x {n} strokes, <= {step:g} px"
            for name, threads, ours_threads in CONFIGURATIONS:
                torch.set_num_threads(threads)
                render, runs = (naive_rasterize, 3) if ours_threads is None else (rasterize, repeats)
                ours_module.CPU_THREADS = ours_threads or default_threads
                as_is, _ = measure(render, pts, runs)
                with busy_cores():
                    busy, _ = measure(render, pts, runs)
                print(f"{label:<32}{name:<34}{as_is * 1e3:>10.1f}{busy * 1e3:>10.1f}{busy / as_is:>10.1f}x", flush=True)
    finally:
        ours_module.CPU_THREADS = default_threads


if __name__ == "__main__":
    main()
