"""Progress on the terminal: a tqdm bar for optimisation, one line for every other stage."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from engine.progress import Progress

if TYPE_CHECKING:
    from tqdm import tqdm


class ProgressBar:
    """tqdm bar on stderr: iteration, ETA, loss and what is still running. A new stage or a new
    optimisation (another level or matrix cell) starts a new bar."""

    def __init__(self, quiet: bool, prefix: str = ""):
        self.quiet, self.prefix = quiet, prefix
        self.bar: tqdm | None = None

    def __call__(self, p: Progress) -> None:
        if self.quiet:
            return
        if p.stage != "optimise":
            self.close()
            print(f"{self.prefix}{p.stage}: {p.detail}", file=sys.stderr)
            return
        bar = self.bar
        if bar is None or p.total != bar.total or p.iteration < bar.n:
            from tqdm import tqdm

            self.close()
            bar = self.bar = tqdm(
                total=p.total, desc=f"{self.prefix}optimise", unit="it", file=sys.stderr, dynamic_ncols=True
            )
        bar.update(p.iteration - bar.n)
        bar.set_postfix_str(f"loss {p.loss:.4g}, {p.detail}" if p.loss is not None else p.detail)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
