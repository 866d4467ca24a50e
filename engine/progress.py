"""Progress reports from long work, for the command line and the bridge alike."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    stage: str  # e.g. "load", "init", "optimise", "write"
    iteration: int  # iterations done in this stage
    total: int  # iteration budget of this stage (work may finish earlier by convergence)
    loss: float | None = None  # mean of the current best eval losses
    detail: str = ""  # e.g. "4 levels x 3 seeds, 5 still optimising"
    eta_s: float | None = None  # seconds left if the whole budget is used


ProgressCallback = Callable[[Progress], None]


def silent(_: Progress) -> None:
    """A callback that reports nothing."""
