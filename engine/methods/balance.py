"""Gradient-norm balancing of loss terms, per problem of a batch (docs/method.md#fidelity-axis, #simplicity-axis).

CLIPascene weighs each loss term by how large the gradients of the others are, so that no term
drowns the rest. The official code runs a backward pass per term to measure them and one more for
the weighted total; the weights are constants of that pass, so the total's gradient is also the
weighted sum of the terms' own gradients, which is what we use: one backward pass fewer
(docs/method.md#deliberate-differences-from-the-official-code, "Gradient balancing").
"""

from __future__ import annotations

import torch

Gradients = list[torch.Tensor | None]  # one per parameter; None where the term does not depend on it


def term_gradients(term: torch.Tensor, params: list[torch.Tensor]) -> Gradients:
    """d term / d params, keeping the graph for the next term."""
    return list(torch.autograd.grad(term, params, retain_graph=True, allow_unused=True))


def mean_abs_gradient(grads: Gradients, rows: torch.Tensor, size: int) -> torch.Tensor:
    """(a,) the balancing norm g: mean |gradient| over one network's `size` parameters, for each of
    the problems `rows` (the parameters' dim 0)."""
    total = torch.zeros(len(rows), device=rows.device)
    for g in grads:
        if g is not None:
            total = total + g[rows].abs().flatten(1).sum(1)
    return total / size


def balance_weights(norms: torch.Tensor) -> torch.Tensor:
    """Term weights (T, B) from the terms' balancing norms g (T, B) (docs/method.md#fidelity-axis).

    weight_i = (sum g - g_i) / ((T - 1) sum g): a term with larger gradients gets a smaller weight;
    the weights of a problem sum to 1. Problems whose gradients all vanish get equal weights.
    """
    T = norms.shape[0]
    if T < 2:
        return torch.ones_like(norms)
    total = norms.sum(0, keepdim=True)
    weights = (total - norms) / ((T - 1) * total.clamp(min=1e-30))
    return torch.where(total > 0, weights, torch.full_like(norms, 1 / T))


def weighted_gradient(
    terms: list[tuple[torch.Tensor, Gradients]], rows: torch.Tensor | None, params: list[torch.Tensor]
) -> list[torch.Tensor]:
    """The gradient of sum_t scale_t x term_t for the problems `rows` (all when None): per parameter,
    the sum over terms of scale (a,) x that term's gradient rows."""
    out = []
    for k, param in enumerate(params):
        total = None
        for scale, grads in terms:
            g = grads[k]
            if g is None:
                continue
            g = g if rows is None else g[rows]
            view = scale.view((-1,) + (1,) * (g.dim() - 1))
            total = g * view if total is None else total.addcmul_(g, view)
        out.append(torch.zeros_like(param if rows is None else param[rows]) if total is None else total)
    return out
