"""CLIPascene's simplicity axis (docs/method.md#simplicity-axis): rows 1..levels of every column.

MLP_simp gives each stroke a presence (a Gumbel-softmax sample, used as its width) while MLP_loc
keeps training. The loss of row j (docs/method.md#simplicity-axis):

    L_clip   the unweighted CLIP term(s): the column's layer, plus the object layer for objects
    L_sparse sum of the presences / the strokes on the canvas
    L_ratio  (L_sparse - r_j x L_clip)^2, r_j = r_1 x 2^(-step x (j - 1))
    total    w_clip-balanced CLIP term(s) + w_sparse x L_sparse + L_ratio, the weights from the terms'
             gradients on MLP_simp (engine.methods.balance)

Each eval is snapshotted; the run's pick is the eval with the lowest summed z-scores of its loss
series, the column's pick its best seed's, and row j + 1 warm-starts every seed from row j's pick.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.methods.balance import (
    Gradients,
    balance_weights,
    mean_abs_gradient,
    term_gradients,
    weighted_gradient,
)
from engine.methods.mlp import expected_keep
from engine.methods.scene_batch import CellResult, SceneBatch, SceneNetworks, Terms, eval_points, on_canvas
from engine.methods.scene_progress import SceneClock


@dataclass
class Snapshot:
    """One eval of a simplicity run, for every problem: the sketch as evaluated, and the full
    training state to warm-start from."""

    state: list[torch.Tensor]  # a copy of SceneNetworks.training_state()
    points: torch.Tensor  # (B, n, k, 2) canvas px
    keep_p: torch.Tensor  # (B, n) MLP_simp's keep probabilities
    on_canvas: torch.Tensor  # (B, n) 1.0 for the strokes that ink the canvas in this run


@dataclass
class _Pick:
    """A column's pick so far: its best seed's problem, that seed's best eval, and its presences."""

    problem: int
    eval: int  # index into the run's evals
    snapshot: Snapshot
    presence: torch.Tensor  # (n,) noise-free presence of every stroke (0 off the canvas)


def row_ratio(r1, step, row: int):
    """The exponential schedule (docs/method.md#simplicity-axis): row j >= 1 trains to r_1 x 2^(-step x (j - 1)),
    rounded to 3 decimals as the official scripts pass it on. Works on floats and on per-problem (float64)
    tensors alike."""
    ratio = r1 * 2.0 ** (-step * (row - 1))
    return torch.round(ratio * 1000) / 1000 if isinstance(ratio, torch.Tensor) else round(ratio, 3)


def ratio_term(
    sparse: torch.Tensor, clip: torch.Tensor, ratio: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(L_ratio, dL_ratio/dL_sparse, dL_ratio/dL_clip), each (B,), from L_sparse, L_clip and r_j (B,).

    L_ratio = (L_sparse - r_j L_clip)^2. The chain rule takes it to the networks through the two
    terms' own gradients, so it needs no backward pass of its own.
    """
    gap = sparse - ratio * clip
    return gap.square(), 2 * gap, -2 * gap * ratio


def zscore_pick(series: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The official best pick of a simplicity run (docs/method.md#simplicity-axis).

    series: (terms, evals, B) eval losses. Each term's series is z-scored over the run's evals
    (population std; a flat series contributes 0), summed over terms; returns (argmin eval (B,),
    the summed z-score there (B,)), the latter comparing seeds as the official code does.
    """
    mean = series.mean(1, keepdim=True)
    std = series.std(1, unbiased=False, keepdim=True)
    z = torch.where(std > 0, (series - mean) / std.clamp(min=1e-30), torch.zeros_like(series)).sum(0)
    best = z.argmin(0)
    return best, z.gather(0, best[None])[0]


def simplified_row(
    batch: SceneBatch, nets: SceneNetworks, clock: SceneClock, row: int, r1: torch.Tensor
) -> list[CellResult]:
    """Optimise row `row` >= 1 of every column from where `nets` stands, toward r_row (r1: (B,)
    float64, the fidelity row's r_1); afterwards every seed of a column holds the column's pick."""
    assert nets.simp is not None and nets.simp_adam is not None, "the simplicity axis starts with MLP_simp"
    p = batch.params
    dev = nets.inputs.device
    every = torch.arange(batch.B)
    rows = every.to(dev)
    if row == 1:  # MLP_loc from the fidelity pick, with a fresh optimiser; MLP_simp fresh per seed
        nets.loc_adam.reset(rows)
    steps = [
        (p.steps_object if o else p.steps_background)[int(layer)] for o, layer in zip(batch.is_object, batch.layer)
    ]
    ratio = row_ratio(r1, torch.tensor(steps, dtype=torch.float64), row).to(dev, torch.float32)  # r_j (B,)
    inked = on_canvas(batch.clean_points(nets), p.half_width)  # (B, n)
    iterations = p.cap(p.simplicity_iterations)
    evals = sorted(eval_points(iterations, p.simplicity_eval_every, p.simplicity_eval_from))
    loc_params = nets.loc.parameters()
    has_object_term = batch.has_object_term.to(dev)
    series, snapshots = [], []  # per eval: (terms, B) unweighted eval losses; Snapshot
    for i in range(iterations + 1):
        terms = batch.forward(nets, every, inked)
        grads, total = _gradient(batch, nets, terms, ratio, has_object_term)
        if i in evals:
            series.append(_eval_losses(terms, has_object_term))
            snapshots.append(_snapshot(nets, terms, inked))
            picks = zscore_pick(torch.stack(series, 1))
            clock.shown = {}
            for name, group in batch.shown_groups():
                pick = _column_pick(batch, picks, snapshots, group)
                clock.shown[name] = pick.snapshot.points[pick.problem][pick.presence > p.keep_threshold]
        nets.loc_adam.step(grads[: len(loc_params)], rows)
        nets.simp_adam.step(grads[len(loc_params) :], rows)
        clock.tick(i + 1, clock.simplicity_total, row, float(total.detach().mean()))

    picks = zscore_pick(torch.stack(series, 1))  # series: (terms, evals, B)
    cells = []
    for group in range(batch.B // batch.S):
        pick = _column_pick(batch, picks, snapshots, group)
        nets.warm_start(pick.snapshot.state, pick.problem, batch.group_rows(group).to(dev))
        cells.append(_cell(batch, row, pick, series[pick.eval], evals[pick.eval], float(ratio[pick.problem])))
    return cells


def _gradient(
    batch: SceneBatch, nets: SceneNetworks, terms: Terms, ratio: torch.Tensor, has_object_term: torch.Tensor
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """(both networks' gradients of the total loss, MLP_loc's then MLP_simp's; the total (B,)).

    The CLIP terms and L_sparse are weighted by balance_weights of their gradients on MLP_simp (the
    object layer's weight times object_layer_weight); L_ratio joins unweighted, its gradient carried
    by the terms' own (`ratio_term`).
    """
    assert nets.simp is not None and terms.sparse is not None
    p = batch.params
    network = nets.loc.parameters() + nets.simp.parameters()
    on_simp = slice(len(nets.loc.parameters()), None)
    rows = torch.arange(batch.B, device=ratio.device)
    layer_loss, object_loss, sparse = terms.layer_loss.mean(1), terms.object_loss.mean(1), terms.sparse
    g_layer = term_gradients(layer_loss.sum(), network)
    g_sparse = term_gradients(sparse.sum(), network)
    no_object_term: Gradients = [None] * len(network)
    g_object = term_gradients(object_loss.sum(), network) if bool(has_object_term.any()) else no_object_term

    norms = torch.stack([mean_abs_gradient(g[on_simp], rows, nets.simp.size) for g in (g_layer, g_object, g_sparse)])
    three = balance_weights(norms)  # layer, object layer, sparse
    two = balance_weights(norms[[0, 2]])  # layer, sparse: problems without the object-layer term
    zero = torch.zeros_like(layer_loss)
    w_layer = torch.where(has_object_term, three[0], two[0])
    w_object = torch.where(has_object_term, p.object_layer_weight * three[1], zero)
    w_sparse = torch.where(has_object_term, three[2], two[1])

    clip = layer_loss + torch.where(has_object_term, object_loss, zero)  # L_clip, unweighted
    l_ratio, d_sparse, d_clip = ratio_term(sparse, clip, ratio)
    scales = [
        (w_layer + d_clip).detach(),
        (w_object + torch.where(has_object_term, d_clip, zero)).detach(),
        (w_sparse + d_sparse).detach(),
    ]
    grads = weighted_gradient(list(zip(scales, [g_layer, g_object, g_sparse])), None, network)
    total = w_layer * layer_loss + w_object * object_loss + w_sparse * sparse + l_ratio
    return grads, total


def _eval_losses(terms: Terms, has_object_term: torch.Tensor) -> torch.Tensor:
    """(3, B) the eval's unweighted losses of the clean view: layer, object layer (0 without), L_sparse."""
    assert terms.sparse is not None
    object_loss = torch.where(has_object_term, terms.object_loss[:, 0], torch.zeros_like(terms.sparse))
    return torch.stack([terms.layer_loss[:, 0], object_loss, terms.sparse]).detach().cpu()


def _snapshot(nets: SceneNetworks, terms: Terms, inked: torch.Tensor) -> Snapshot:
    assert terms.keep_p is not None
    return Snapshot(
        [t.detach().clone() for t in nets.training_state()],
        terms.points.detach().clone(),
        terms.keep_p.detach().clone(),
        inked.clone(),
    )


def _column_pick(
    batch: SceneBatch, picks: tuple[torch.Tensor, torch.Tensor], snapshots: list[Snapshot], group: int
) -> _Pick:
    """Column `group`'s pick by `zscore_pick`'s (best eval (B,), summed z-score (B,)) over the evals so far."""
    best_eval, zsum = picks
    rows = batch.group_rows(group)
    b = int(rows[zsum[rows].argmin()])
    e = int(best_eval[b])
    snap = snapshots[e]
    return _Pick(b, e, snap, expected_keep(snap.keep_p[b], batch.params.gumbel_tau) * snap.on_canvas[b])


def _cell(batch: SceneBatch, row: int, pick: _Pick, losses: torch.Tensor, iteration: int, ratio: float) -> CellResult:
    """The cell of a column's pick; losses: (3, B) that eval's `_eval_losses`."""
    b, p = pick.problem, batch.params
    named = {f"layer {int(batch.layer[b])}": float(losses[0, b]), "sparse": float(losses[2, b])}
    if batch.has_object_term[b]:
        named[f"layer {p.object_layer}"] = float(losses[1, b])
    return CellResult(
        row,
        pick.snapshot.points[b].cpu(),
        (pick.presence > p.keep_threshold).cpu(),
        pick.snapshot.keep_p[b].cpu(),
        batch.seed[b],
        iteration,
        named,
        ratio,
        pick.presence.cpu(),
    )
