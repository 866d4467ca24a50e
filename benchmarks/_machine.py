"""One line naming the machine a benchmark ran on, printed at the top of every benchmark."""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterator

import torch


def describe(device: torch.device | str = "cpu") -> str:
    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = _cpu_name()
    return (
        f"{name}; {os.cpu_count()} CPU cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), Python {platform.python_version()}"
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
