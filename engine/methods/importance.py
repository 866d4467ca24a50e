"""Stroke importance: how much a sketch's loss grows when one stroke is left out
(docs/method.md#stroke-importance). This project's addition, not the papers'.

A stroke that carries the drawing raises the loss when removed; one that adds nothing (or ink
where the photo has none) barely changes it, or lowers it. The score is the loss without the
stroke minus the loss of the whole sketch, so it can be negative.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

CHUNK = 64  # sketches per loss call: up to 63 strokes, every leave-one-out render goes in one pass


def leave_one_out(loss: Callable[[torch.Tensor], torch.Tensor], n: int, chunk: int = CHUNK) -> torch.Tensor:
    """(n,) increase of the loss when each of n strokes is left out.

    loss: drawn (B, n) bool -> (B,) losses, where row b of `drawn` says which strokes sketch b draws;
    it is called with the whole sketch (row 0) and the n leave-one-out sketches, `chunk` rows at a time.
    """
    drawn = torch.ones(n + 1, n, dtype=torch.bool)  # (n + 1, n): row 0 whole, row i + 1 without stroke i
    drawn[torch.arange(1, n + 1), torch.arange(n)] = False
    losses = torch.cat([loss(drawn[lo : lo + chunk]).float().cpu() for lo in range(0, n + 1, chunk)])
    return losses[1:] - losses[0]


def by_importance(scores: torch.Tensor) -> torch.Tensor:
    """Indices (n,) that order strokes most important first (ties keep their order)."""
    return torch.sort(scores, descending=True, stable=True).indices
