"""Progress of a CLIPascene job: every iteration of every stage, with the ETA of the whole job."""

from __future__ import annotations

import time

import torch

from bridge.params import SceneParams
from engine.progress import Progress, ProgressCallback


class SceneClock:
    """Counts the job's iterations and reports each one.

    `shown` is what live previews draw: {part name: (n, k, 2) canvas px} of the current best sketch
    of each part's shown column (`SceneBatch.shown_groups`) in the row being optimised. The stages
    keep it up to date from what they compute anyway: views in the fidelity stage; at each
    simplicity eval, the column's pick so far (a few ops on (evals, B) losses and one (n,) mask).
    Nothing is rendered or copied to the CPU unless a preview is drawn.
    """

    def __init__(self, params: SceneParams, parts: list[str], fidelity_iterations: int, progress: ProgressCallback):
        """fidelity_iterations: the longest fidelity run of the job (its forwards are that + 1)."""
        self.params, self.progress, self.ran = params, progress, 0
        self.fidelity_total = 1 + fidelity_iterations
        self.simplicity_total = 1 + params.cap(params.simplicity_iterations)
        self.total = self.fidelity_total + params.levels * self.simplicity_total
        self.columns = ", ".join(map(str, params.layers))
        self.what = " + ".join(parts)
        self.seeds = f"{len(params.seeds)} seed{'s' if len(params.seeds) > 1 else ''}"
        self.start = time.perf_counter()
        self.shown: dict[str, torch.Tensor] | None = None

    def tick(self, iteration: int, total: int, row: int, loss: float) -> None:
        self.ran += 1
        per_iteration = (time.perf_counter() - self.start) / self.ran
        self.progress(
            Progress(
                "optimise",
                iteration,
                total,
                loss=loss,
                detail=f"{self.row_name(row)} of layers {self.columns} ({self.what}, {self.seeds})",
                eta_s=per_iteration * (self.total - self.ran),
                strokes=self.shown,
            )
        )

    def row_name(self, row: int) -> str:
        """'fidelity row 0/8' or 'simplicity 3/8': the matrix row every column is optimising."""
        return f"{'fidelity row' if row == 0 else 'simplicity'} {row}/{self.params.levels}"
