"""Progress reports from long work, for the command line and the bridge alike."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Progress:
    stage: str  # e.g. "load", "init", "optimise", "write"
    iteration: int  # iterations done in this stage
    total: int  # iteration budget of this stage (work may finish earlier by convergence)
    loss: float | None = None  # mean of the current best eval losses
    detail: str = ""  # e.g. "4 levels x 3 seeds, 5 still optimising"
    eta_s: float | None = None  # seconds left at most (the rest of the budget); None when nothing runs
    # The current best sketch of the level being optimised, for live previews: (n, k, 2) canvas px, or
    # a scene's {part name: (n, k, 2) canvas px} (tensors the method keeps updating: read them during
    # the callback only).
    strokes: Any = None
    preview: bytes | None = None  # PNG of `strokes` over the faded photo (engine.jobs renders it)
    sketch_iteration_s: float | None = None  # measured seconds per iteration of one sketch, so far
    # "Insert it as it is now": a callable, to be called during the callback only, giving every level's
    # best strokes so far (the method's [(n, k, 2) canvas px per level], or None before every level
    # has an eval); engine.jobs turns it into one giving the SVG a finished job writes (bytes or None).
    snapshot: Callable[[], Any] | None = None


ProgressCallback = Callable[[Progress], None]


def silent(_: Progress) -> None:
    """A callback that reports nothing."""
