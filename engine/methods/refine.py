"""Refine Sketch (docs/method.md#refine-sketch): CLIPasso's optimisation resumed from a designer's strokes.

Locked strokes are drawn and count in the loss but never move (`descend` zeroes their gradient).
Optionally the least important unlocked strokes are dropped first (simplify), or new strokes are
started where the saliency x edge distribution is high and the sketch has no ink yet (add).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bridge.params import ClipassoParams, RefineParams
from engine.methods.clipasso import descend, eval_loss, ranked_importance, stroke_importance
from engine.methods.importance import by_importance
from engine.methods.init import salient_edges, sample_strokes, start_distribution
from engine.preprocess import CANVAS
from engine.progress import Progress, ProgressCallback, silent
from engine.render import rasterize
from engine.runtime import Runtime

COVER_RADIUS = 4  # canvas px around the sketch's ink that counts as covered: new strokes start farther away
INKED = 0.25  # coverage above which a pixel counts as ink
_START = ClipassoParams()  # temperature and random-walk step of the start distribution, as CLIPasso's


@dataclass
class RefineRun:
    points: torch.Tensor  # (m, k, 2) canvas px: the kept given strokes in their order, then the added ones
    half_width: torch.Tensor  # (m,) canvas px
    sources: torch.Tensor  # (m,) long: the index of the given stroke, -1 for an added one
    importance: torch.Tensor  # (m,) eval-loss increase without each stroke; (0,) over RANK_LIMIT strokes
    start_loss: float  # eval loss of the strokes as given (after simplify's drop, before anything is added)
    eval_loss: float  # eval loss of the result
    iterations: int
    seconds: float


def refine(
    runtime: Runtime,
    target: torch.Tensor,
    start: torch.Tensor,
    half_width: torch.Tensor,
    locked: torch.Tensor,
    params: RefineParams,
    added_half_width: float,
    progress: ProgressCallback = silent,
) -> RefineRun:
    """Refine strokes `start` (n, k, 2) canvas px with half-widths (n,) canvas px against a
    (1, 3, 224, 224) target; locked (n,) bool strokes stay bit-identical."""
    started = time.perf_counter()
    target = target.to(runtime.device)
    sources = torch.arange(len(start))
    if params.simplify:
        progress(Progress("rank", 0, 1, detail="strokes by importance, to simplify"))
        keep = simplified(stroke_importance(runtime, target, start, half_width), locked, params.simplify)
        start, half_width, locked, sources = start[keep], half_width[keep], locked[keep], sources[keep]
    start_loss = float(eval_loss(runtime, target, start[None], half_width[None])[0])
    if params.add:
        progress(Progress("init", 0, 1, detail=f"{params.add} new strokes on uncovered edges"))
        generator = torch.Generator().manual_seed(params.seed)
        new = added_strokes(runtime, target, start, half_width, params.add, generator)
        start = torch.cat([start, new])
        half_width = torch.cat([half_width, torch.full((params.add,), added_half_width)])
        locked = torch.cat([locked, torch.zeros(params.add, dtype=torch.bool)])
        sources = torch.cat([sources, torch.full((params.add,), -1)])
    clipasso = ClipassoParams(
        strokes=(len(start),),
        seeds=(params.seed,),
        iterations=params.iterations,
        control_points=start.shape[1],
        aug_bank=params.aug_bank,
    )
    label = f"{len(start)} strokes, {int(locked.sum())} locked"
    run = descend(runtime, target, start[None], clipasso, half_width[None], progress, label, locked[None])
    points = run.points[0]
    progress(Progress("rank", 0, 1, detail="strokes by importance"))
    importance = ranked_importance(runtime, target, points, half_width)
    return RefineRun(
        points=points,
        half_width=half_width,
        sources=sources,
        importance=importance,
        start_loss=start_loss,
        eval_loss=float(run.loss[0]),
        iterations=run.ran,
        seconds=time.perf_counter() - started,
    )


def simplified(scores: torch.Tensor, locked: torch.Tensor, count: int) -> torch.Tensor:
    """Indices (count,), in stroke order, of the strokes to keep: every locked one, and the unlocked
    ones with the highest scores (n,)."""
    order = by_importance(torch.where(locked, torch.inf, scores))
    return order[:count].sort().values


@torch.no_grad()
def added_strokes(
    runtime: Runtime,
    target: torch.Tensor,
    points: torch.Tensor,
    half_width: torch.Tensor,
    count: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """(count, k, 2) canvas px: new strokes started as CLIPasso starts them, from the saliency x edge
    distribution with the pixels the sketch `points` (n, k, 2) already covers taken out."""
    saliency, ink = salient_edges(runtime, target)
    distribution = start_distribution(saliency, ink & ~covered(points, half_width), _START.temperature)
    return sample_strokes(distribution, count, points.shape[1], generator, _START.walk_step)


@torch.no_grad()
def covered(points: torch.Tensor, half_width: torch.Tensor) -> torch.Tensor:
    """(224, 224) bool: the ink of strokes (n, k, 2) canvas px, grown by COVER_RADIUS px."""
    drawing = rasterize(points[None].cpu(), half_width[None].cpu(), (CANVAS, CANVAS))  # (1, 3, H, W)
    ink = (1 - drawing[0, 0] > INKED).float()  # (H, W)
    size = 2 * COVER_RADIUS + 1
    return F.max_pool2d(ink[None, None], size, stride=1, padding=COVER_RADIUS)[0, 0] > 0
