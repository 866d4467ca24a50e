"""Ink (docs/method.md#ink): a width per control point, optimised
against CLIPasso's loss with the strokes frozen. This project's addition; not in the papers.

After a method has placed the strokes (pen: one width for all), this stage gives every stroke m knot
half-widths (m = its control points, evenly spaced in the curve parameter, linear between them:
Inkscape's PowerStroke with the Linear interpolator) and optimises only them, with Adam, on the same
loss the strokes were optimised with (CLIPasso's: clean view + augmentations). The widths are
bounded, [min_scale, max_scale] x the pen's half-width, through a sigmoid, and a taper prior pulls the
two end knots towards `taper` x the pen's half-width (a brush lifting off the paper), weighed in
units of the pen's own loss. Each sketch keeps
its best eval (CLIP eval loss + prior), and the pen's uniform widths are the first eval: the ink a
user gets never has a higher objective than the pen strokes it started from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from engine.clip.features import ResNetFeatures
from engine.methods.augment import augment, augmented_views, random_augmentations
from engine.methods.clipasso import clipasso_loss, features
from engine.preprocess import CANVAS
from engine.progress import Progress, ProgressCallback, silent
from engine.render import rasterize_tapered
from engine.runtime import Runtime


@dataclass(frozen=True)
class InkParams:
    iterations: int = 100  # Adam steps on the widths alone: far fewer than the strokes took
    lr: float = 0.1  # on the widths' logits
    eval_every: int = 10
    min_scale: float = 0.3  # knot half-widths stay within [min, max] x the pen's half-width
    max_scale: float = 2.5
    taper: float = 0.5  # the prior's end-knot half-width, x the pen's
    prior_weight: float = 0.02  # x the pen's eval loss, per unit of squared end-width error (in pen widths)
    num_aug: int = 4  # augmented views per step besides the clean one: the method's own number
    seed: int = 0  # draws the augmentations

    def validate(self) -> InkParams:
        if not (0 < self.min_scale < 1 < self.max_scale and self.min_scale <= self.taper <= self.max_scale):
            raise ValueError(f"ink width bounds must satisfy 0 < min < 1 < max and hold the taper: {self}")
        if self.iterations < 0 or self.lr <= 0 or self.eval_every < 1 or self.prior_weight < 0 or self.num_aug < 1:
            raise ValueError(f"ink iterations, learning rate, eval interval and prior weight must be sane: {self}")
        return self


@dataclass
class InkResult:
    half_widths: torch.Tensor  # (K, n, k) canvas px: each stroke's knot half-widths at its best eval
    pen_loss: torch.Tensor  # (K,) CLIP eval loss with the pen's uniform width
    ink_loss: torch.Tensor  # (K,) CLIP eval loss with the kept widths
    iterations: int


def scale_of(u: torch.Tensor, ink: InkParams) -> torch.Tensor:
    """Knot half-width as a multiple of the pen's, from its unbounded logit `u` (same shape)."""
    return ink.min_scale + (ink.max_scale - ink.min_scale) * torch.sigmoid(u)


def taper_prior(scale: torch.Tensor, pen_loss: torch.Tensor, ink: InkParams) -> torch.Tensor:
    """(K,) the prior: the mean squared error of the end knots from the taper (scale (K, n, k), in pen
    half-widths), in units of each sketch's pen eval loss (K,), so that its weight means the same
    share of the loss whatever the network's loss scale is."""
    ends = scale[..., [0, -1]]
    return ink.prior_weight * pen_loss * (ends - ink.taper).square().flatten(1).mean(1)


def optimise_ink(
    runtime: Runtime,
    target: torch.Tensor,
    points: torch.Tensor,
    half_width: float | torch.Tensor,
    ink: InkParams = InkParams(),
    progress: ProgressCallback = silent,
    drawn: torch.Tensor | None = None,
) -> InkResult:
    """Optimise knot half-widths of K sketches `points` (K, n, k, 2) canvas px (frozen) against a
    (1, 3, 224, 224) target. half_width: the pen's, canvas px, one or (K,) per sketch. drawn: (K, n)
    bool, the real strokes (padding strokes off the canvas draw nothing either way)."""
    ink.validate()
    device = runtime.device
    points = points.to(device).float()
    K, n, k, _ = points.shape
    target = target.to(device)
    pen = torch.as_tensor(half_width, dtype=torch.float32, device=device).expand(K)[:, None, None]  # (K, 1, 1) px
    start = math.log((1 - ink.min_scale) / (ink.max_scale - 1))  # sigmoid(start) gives scale 1: the pen
    u = torch.full((K, n, k), start, device=device, requires_grad=True)
    mask = (torch.ones(K, n, dtype=torch.bool) if drawn is None else drawn).to(device)[..., None]
    optimizer = torch.optim.Adam([u], lr=ink.lr)
    rng = torch.Generator().manual_seed(ink.seed + 11)
    clean = features(runtime, target)
    best = torch.full((K,), math.inf)
    pen_loss = torch.zeros(K)
    ink_loss = torch.zeros(K)
    best_u = u.detach().clone()
    views = 1 + ink.num_aug
    for iteration in range(ink.iterations + 1):
        optimizer.zero_grad(set_to_none=True)
        scale = scale_of(u, ink)
        sketches = rasterize_tapered(points, pen * scale, (CANVAS, CANVAS))  # (K, 3, H, W)
        augmentations = random_augmentations(K * ink.num_aug, CANVAS, rng)
        images = augmented_views(sketches, augmentations)  # (K, views, 3, H, W)
        with torch.no_grad():
            target_aug = features(runtime, augment(target.expand(len(augmentations), -1, -1, -1), augmentations))
        rows = _interleave(clean, target_aug, K, ink.num_aug)
        clip = clipasso_loss(features(runtime, images.flatten(0, 1)), rows, views)  # (K, views)
        if iteration == 0:  # the widths are still the pen's: its clean-view loss
            pen_loss = clip[:, 0].detach().float().cpu()
        prior = taper_prior(torch.where(mask, scale, ink.taper), pen_loss.to(device), ink)
        if iteration % ink.eval_every == 0 or iteration == ink.iterations:
            evaluated = clip[:, 0].detach().float().cpu()
            objective = evaluated + prior.detach().float().cpu()
            better = objective < best
            best = torch.where(better, objective, best)
            ink_loss = torch.where(better, evaluated, ink_loss)
            best_u[better.to(device)] = u.detach()[better.to(device)]
        if iteration == ink.iterations:
            break
        (clip.mean(1) + prior).sum().backward()
        assert u.grad is not None
        u.grad.masked_fill_(~mask, 0.0)
        optimizer.step()
        progress(
            Progress(
                "ink", iteration + 1, ink.iterations, loss=float(best.mean()), detail="stroke widths, points frozen"
            )
        )
    return InkResult((pen * scale_of(best_u, ink)).cpu(), pen_loss, ink_loss, ink.iterations)


def _interleave(clean: ResNetFeatures, augmented: ResNetFeatures, K: int, num_aug: int) -> ResNetFeatures:
    """Target features in the loss's row order: per sketch, the clean target then its augmentations."""

    def rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        b = b.view(K, num_aug, *b.shape[1:])
        return torch.cat([a.expand(K, *a.shape[1:])[:, None], b], 1).flatten(0, 1)

    return ResNetFeatures(*(rows(getattr(clean, f), getattr(augmented, f)) for f in ("layer2", "layer3", "embedding")))
