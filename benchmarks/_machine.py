"""What every benchmark shares: the line naming the machine it ran on, the load average, the
machine's matmul peak, peak memory, and busy cores for the contention runs."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator

import torch

BUSY_PER_CORE = 0.5  # load average per core above which a timing is not an idle-machine figure


def describe(device: torch.device | str = "cpu") -> str:
    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = _cpu_name()
    return (
        f"{name}; {os.cpu_count()} CPU cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads, GOMP_SPINCOUNT {os.environ.get('GOMP_SPINCOUNT', 'unset')}), "
        f"Python {platform.python_version()}"
    )


@contextlib.contextmanager
def peak_memory(device: torch.device | str, into: list[float]) -> Iterator[None]:
    """Append to `into` the peak CUDA memory (MiB) allocated by torch inside the block; nothing on
    other devices (a CPU's peak resident memory cannot be reset between configurations)."""
    device = torch.device(device)
    if device.type != "cuda":
        yield
        return
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    yield
    torch.cuda.synchronize(device)
    into.append(torch.cuda.max_memory_allocated(device) / 2**20)


def peaks(label: str, figures: dict[str, list[float]]) -> str:
    """One line of peak memory figures ("" where none was measured, e.g. on a CPU)."""
    cells = [f"{name} {max(values):.0f} MiB" for name, values in figures.items() if values]
    return f"  peak GPU memory, {label}: " + ", ".join(cells) if cells else ""


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_line(when: str, own_threads: int = 0, busy_loops: int = 0) -> str:
    """The load average now, per core, with a loud warning where the machine is busy: a timing taken
    then measures the other work as much as ours (benchmarks/README.md keeps idle-machine figures).
    At the end of a run the average counts the run's own busy threads too (`own_threads`, its torch
    threads, and the `busy_loops` of a contention run's last configuration): only what is left besides
    them is other work. The busy loops ran for part of the last minute only, so the end line may miss
    some other work: the start line is the strict check."""
    one, five, fifteen = os.getloadavg()
    cores = os.cpu_count() or 1
    own = own_threads + busy_loops
    others = max(0.0, one - own) / cores
    loops = f" and {busy_loops} busy loops" if busy_loops else ""
    line = f"load average at {when}: {one:.2f}, {five:.2f}, {fifteen:.2f} ({one / cores:.2f} per core, {cores} cores"
    line += f"; {others:.2f} per core besides this run's {own_threads} threads{loops})" if own else ")"
    if others > BUSY_PER_CORE:
        line += (
            f"\n!!! WARNING: the machine is busy (over {BUSY_PER_CORE} per core): these timings are NOT "
            "idle-machine figures; do not put them in benchmarks/README.md as such !!!"
        )
    return line


def matmul_peak(device: torch.device | str, dtype: torch.dtype, side: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of the best of `repeats` square matmuls of `dtype` on `device`: the machine's practical
    peak for that arithmetic, measured in the same run as the figures it is compared with."""
    device = torch.device(device)
    a = torch.randn(side, side, device=device).to(dtype)
    b = torch.randn(side, side, device=device).to(dtype)
    best = float("inf")
    for _ in range(repeats + 1):  # the first is a warm-up
        _sync(device)
        started = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - started)
    return 2 * side**3 / best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@contextlib.contextmanager
def busy_cores() -> Iterator[None]:
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
