"""CLIPascene (docs/method.md#clipascene): a fidelity x simplicity matrix of sketches for each part of a scene.

Columns are fidelity layers, rows simplicity levels; every part (object, background) gets its own
matrix. `optimise_scene` runs the two stages on one batch of every part x layer x seed
(engine.methods.scene_batch):

- Fidelity (row 0, docs/method.md#fidelity-axis; engine.methods.scene_fidelity): MLP_loc moves 64
  strokes; loss = L2 of ViT layer outputs at the column's layer (objects add layer 4 at weight 0.5,
  the two terms balanced by gradient norms); the lowest eval keeps; its CLIP loss gives r_1.
- Simplicity (rows 1..levels, docs/method.md#simplicity-axis; engine.methods.scene_simplify):
  MLP_simp adds a presence per stroke (Gumbel-softmax, used as width); loss = balanced L_clip and
  L_sparse + L_ratio for r_j = r_1 x 2^(-step x (j-1)); the eval with the lowest summed z-scores
  keeps; row j + 1 warm-starts from row j's pick.

Where and why this differs from the official code (batching, summed term gradients, evals from the
clean view, the augmentation bank, checkpoints as evaluated, deterministic export):
docs/method.md#deliberate-differences-from-the-official-code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from bridge.params import SceneParams
from engine.methods.scene_batch import BACKGROUND, OBJECT, CellResult, SceneBatch, SceneTarget
from engine.methods.scene_fidelity import fidelity_row, problem_iterations
from engine.methods.scene_progress import SceneClock
from engine.methods.scene_simplify import simplified_row
from engine.progress import Progress, ProgressCallback, silent
from engine.runtime import Runtime

__all__ = ["BACKGROUND", "OBJECT", "CellResult", "ColumnResult", "SceneRun", "SceneTarget", "optimise_scene"]


@dataclass
class ColumnResult:
    part: str
    layer: int
    cells: list[CellResult] = field(default_factory=list)  # rows 0..levels


@dataclass
class SceneRun:
    columns: list[ColumnResult]  # parts in the order given, then layers in params order
    iterations: int  # batch iterations run, all stages together
    seconds: float


def optimise_scene(
    runtime: Runtime, targets: list[SceneTarget], params: SceneParams, progress: ProgressCallback = silent
) -> SceneRun:
    """The whole matrix for every part: fidelity row, then `levels` simplified rows."""
    started = time.perf_counter()
    progress(Progress("init", 0, 1, detail="saliency, edges and target features"))
    batch = SceneBatch(runtime, targets, params)
    nets = batch.location_networks()
    clock = SceneClock(params, [t.name for t in targets], int(problem_iterations(batch).max()), progress)
    columns = [ColumnResult(t.name, layer) for t in targets for layer in params.layers]

    fidelity = fidelity_row(batch, nets, clock)
    for column, cell in zip(columns, fidelity.cells):
        column.cells.append(cell)
    if params.levels:
        batch.add_simplicity_networks(nets)
        for row in range(1, params.levels + 1):
            for column, cell in zip(columns, simplified_row(batch, nets, clock, row, fidelity.r1)):
                column.cells.append(cell)
        for column in columns:  # row 0 has no presence of its own: rank its strokes as row 1 does
            column.cells[0].importance = column.cells[1].importance.clone()
    return SceneRun(columns, clock.ran, time.perf_counter() - started)
