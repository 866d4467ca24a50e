"""Progress on the terminal: a tqdm bar for optimisation, one line for every other stage."""

from __future__ import annotations

import sys

from engine.progress import Progress


class ProgressBar:
    """tqdm bar on stderr: iteration, ETA, loss and what is still running. A new stage or a new
    optimisation (another level or matrix cell) starts a new bar."""

    def __init__(self, quiet: bool, prefix: str = ""):
        self.quiet, self.prefix, self.bar = quiet, prefix, None

    def __call__(self, p: Progress) -> None:
        if self.quiet:
            return
        if p.stage != "optimise":
            self.close()
            print(f"{self.prefix}{p.stage}: {p.detail}", file=sys.stderr)
            return
        if self.bar is None or p.total != self.bar.total or p.iteration < self.bar.n:
            from tqdm import tqdm

            self.close()
            self.bar = tqdm(
                total=p.total, desc=f"{self.prefix}optimise", unit="it", file=sys.stderr, dynamic_ncols=True
            )
        self.bar.update(p.iteration - self.bar.n)
        self.bar.set_postfix_str(f"loss {p.loss:.4g}, {p.detail}" if p.loss is not None else p.detail)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
