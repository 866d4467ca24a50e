"""CLIPascene's fidelity axis (docs/method.md#fidelity-axis): row 0 of every column.

MLP_loc alone moves the strokes. The loss is the L2 of ViT-B/32 outputs at the column's layer;
objects add the object layer (4) at weight 0.5, the two terms balanced by their gradients. Each seed
keeps its lowest eval (the weighted loss of the clean view), each column its best seed, and every
seed of the column continues from that winner. The winner's unweighted CLIP loss sets r_1, where
the simplicity axis's ratio schedule starts (docs/method.md#simplicity-axis).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from bridge.params import SceneParams
from engine.methods.balance import balance_weights, mean_abs_gradient, term_gradients, weighted_gradient
from engine.methods.scene_batch import CellResult, SceneBatch, SceneNetworks, Terms, eval_points
from engine.methods.scene_progress import SceneClock


@dataclass
class FidelityRow:
    cells: list[CellResult]  # row 0 of every column, in column order
    r1: torch.Tensor  # (B,) float64: r_1 of each problem's column, 1 / its winner's L_clip


def fidelity_iterations(params: SceneParams, is_object: bool, layer: int) -> int:
    """Iterations of one fidelity run: background 1500; objects 1000, 600 below layer 8 (capped)."""
    if not is_object:
        return params.cap(params.fidelity_iterations_background)
    shallow = layer < 8
    return params.cap(params.fidelity_iterations_object_shallow if shallow else params.fidelity_iterations_object)


def problem_iterations(batch: SceneBatch) -> torch.Tensor:
    """(B,) fidelity iterations of every problem."""
    return torch.tensor(
        [fidelity_iterations(batch.params, bool(o), int(layer)) for o, layer in zip(batch.is_object, batch.layer)]
    )


def fidelity_row(batch: SceneBatch, nets: SceneNetworks, clock: SceneClock) -> FidelityRow:
    """Optimise row 0 of every column; afterwards every seed of a column holds its winner's MLP_loc
    and input (`nets` trains in place)."""
    p = batch.params
    iterations = problem_iterations(batch)
    evals = [eval_points(int(n), p.fidelity_eval_every, p.fidelity_eval_from) for n in iterations]
    loc_params = nets.loc.parameters()
    best = _BestEvals.start(batch.start_points, loc_params)
    for i in range(int(iterations.max()) + 1):
        active = (iterations >= i).nonzero().flatten()
        terms = batch.forward(nets, active)
        rows = active.to(terms.layer_loss.device)
        layer_weight, object_weight, grads = _balanced_gradient(batch, nets, terms, active)
        weighted = layer_weight * terms.layer_loss.mean(1) + object_weight * terms.object_loss.mean(1)
        clean = (layer_weight * terms.layer_loss[:, 0] + object_weight * terms.object_loss[:, 0]).detach().cpu()
        best.update(i, active, [i in evals[b] for b in active.tolist()], clean, terms, loc_params)
        clock.shown = _shown(batch, active, terms.points, best)
        nets.loc_adam.step(grads, rows)
        clock.tick(i + 1, clock.fidelity_total, 0, float(weighted.detach().mean()))
    return _column_winners(batch, nets, best)


def _balanced_gradient(
    batch: SceneBatch, nets: SceneNetworks, terms: Terms, active: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """(layer term's weight (a,), object-layer term's weight (a,), MLP_loc's gradient of the
    weighted loss for the active rows). Weight 1 and 0 where a problem has only its layer's term;
    for objects the two terms' balance_weights, the object layer's times object_layer_weight."""
    dev = terms.layer_loss.device
    rows = active.to(dev)
    has_object_term = batch.has_object_term[active].to(dev)
    loc_params = nets.loc.parameters()
    g_layer = term_gradients(terms.layer_loss.mean(1).sum(), loc_params)
    layer_weight = torch.ones(len(active), device=dev)
    object_weight = torch.zeros(len(active), device=dev)
    weighted_terms = [(layer_weight, g_layer)]
    if bool(has_object_term.any()):
        g_object = term_gradients(terms.object_loss.mean(1).sum(), loc_params)
        norms = torch.stack(
            [mean_abs_gradient(g_layer, rows, nets.loc.size), mean_abs_gradient(g_object, rows, nets.loc.size)]
        )
        weights = balance_weights(norms)
        layer_weight = torch.where(has_object_term, weights[0], layer_weight)
        object_weight = torch.where(has_object_term, batch.params.object_layer_weight * weights[1], object_weight)
        weighted_terms = [(layer_weight, g_layer), (object_weight, g_object)]
    grads = weighted_gradient(weighted_terms, None if len(active) == batch.B else rows, loc_params)
    return layer_weight, object_weight, grads


@dataclass
class _BestEvals:
    """Each problem's lowest eval so far, and what it needs from that eval."""

    loss: torch.Tensor  # (B,) the weighted eval loss; inf before the first eval
    points: torch.Tensor  # (B, n, k, 2) canvas px, as evaluated
    iteration: torch.Tensor  # (B,) long
    layer_loss: torch.Tensor  # (B,) unweighted eval loss at the column's layer
    object_loss: torch.Tensor  # (B,) unweighted eval loss at the object layer (0 without that term)
    loc: list[torch.Tensor]  # MLP_loc's parameters as evaluated (B, ...) each

    @classmethod
    def start(cls, points: torch.Tensor, loc_params: list[torch.Tensor]) -> _BestEvals:
        B = len(points)
        return cls(
            torch.full((B,), math.inf),
            points.clone(),
            torch.zeros(B, dtype=torch.long),
            torch.zeros(B),
            torch.zeros(B),
            [t.detach().clone() for t in loc_params],
        )

    def update(
        self,
        iteration: int,
        active: torch.Tensor,
        is_eval: list[bool],
        clean: torch.Tensor,
        terms: Terms,
        loc_params: list[torch.Tensor],
    ) -> None:
        """Keep the evals (is_eval per active problem) that beat a problem's best; clean: (a,) eval losses."""
        for j, b in enumerate(active.tolist()):
            if is_eval[j] and clean[j] < self.loss[b]:
                self.loss[b], self.iteration[b] = clean[j], iteration
                self.points[b] = terms.points[j].detach().cpu()
                self.layer_loss[b] = terms.layer_loss[j, 0].detach().cpu()
                self.object_loss[b] = terms.object_loss[j, 0].detach().cpu()
                for saved, live in zip(self.loc, loc_params):
                    saved[b] = live[b].detach()


def _column_winners(batch: SceneBatch, nets: SceneNetworks, best: _BestEvals) -> FidelityRow:
    """Each column's best seed: its cell, its r_1, and every seed of the column set to continue from it."""
    p = batch.params
    r1 = torch.zeros(batch.B, dtype=torch.float64)
    cells = []
    for group in range(batch.B // batch.S):
        rows = batch.group_rows(group)
        b = int(rows[best.loss[rows].argmin()])
        # L_clip, r_1 = 1 / L_clip: objects add the unweighted object-layer loss, which a column at
        # that layer counts twice (the official code adds the layer's loss to itself).
        object_loss = best.object_loss[b] if batch.has_object_term[b] else best.layer_loss[b]
        clip_loss = float(best.layer_loss[b] + (object_loss if batch.is_object[b] else 0))
        r1[rows] = 1.0 / max(clip_loss, 1e-12)
        with torch.no_grad():  # every seed continues from the winner: its network, on its input
            for saved, live in zip(best.loc, nets.loc.parameters()):
                live[rows] = saved[b]
            nets.inputs[rows.to(nets.inputs.device)] = nets.inputs[b].clone()
        layer = int(batch.layer[b])
        losses = {f"layer {layer}": float(best.layer_loss[b])}
        if batch.has_object_term[b]:
            losses[f"layer {p.object_layer}"] = float(best.object_loss[b])
        everything = torch.ones(p.strokes, dtype=torch.bool)
        cells.append(
            CellResult(
                0, best.points[b], everything, torch.ones(p.strokes), batch.seed[b], int(best.iteration[b]), losses
            )
        )
    return FidelityRow(cells, r1)


def _shown(batch: SceneBatch, active: torch.Tensor, points: torch.Tensor, best: _BestEvals) -> dict[str, torch.Tensor]:
    """`SceneClock.shown` in the fidelity stage: the shown column's best seed at its best eval so far;
    before the column's first eval, the strokes its first seed just drew (points: (a, n, k, 2) of
    the active problems)."""
    shown = {}
    for name, group in batch.shown_groups():
        rows = batch.group_rows(group)
        losses = best.loss[rows]
        if bool(losses.isfinite().any()):
            shown[name] = best.points[int(rows[losses.argmin()])]
        else:  # a column without an eval yet is still running: its first seed is active
            shown[name] = points[int((active == rows[0]).nonzero()[0, 0])].detach()
    return shown
