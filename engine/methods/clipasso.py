"""CLIPasso (docs/method.md#clipasso): Bézier strokes optimised so that CLIP RN101 sees the sketch like the image.

All abstraction levels x seeds form ONE batch: every iteration renders all still-running sketches,
runs CLIP on all their images (in passes sized to the device: engine.budget.sketches_per_pass; the
strokes are the same whatever the pass size) and takes one Adam step for all of them, through the
fp16 loss scale where CLIP runs in fp16 (docs/method.md#precision). Adam is element-wise,
so each sketch is optimised as in a run of its own, except that which random augmentations it
draws depends on the batch: a job is reproducible, but a level run alone draws other (equally
random) augmentations. Levels with fewer strokes are padded with strokes parked off the canvas,
which draw nothing and receive no gradient. `descend` is that loop for any starting strokes, with
per-stroke widths and locks (Refine Sketch uses it too); finally each level's strokes are ranked by
importance (docs/method.md#stroke-importance), most important first.

Where and why this differs from the official code (batching, evals from the clean pair, the
augmentation bank, the evaluated strokes kept): docs/method.md#deliberate-differences-from-the-official-code.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bridge.params import ClipassoParams
from bridge.wording import count
from engine import budget
from engine.clip.features import ResNetFeatures, normalize, resnet_features, widen
from engine.clip.models import RN101
from engine.methods.augment import Augmentations, augmented_copies, augmented_views, draw_views, random_augmentations
from engine.methods.importance import by_importance, leave_one_out
from engine.methods.init import salient_edges, sample_strokes, start_distribution
from engine.preprocess import CANVAS
from engine.progress import Progress, ProgressCallback, silent
from engine.runtime import Runtime

PARKED = -1.0e4  # where padding strokes wait, far off the canvas
RANK_LIMIT = 256  # strokes: leave-one-out draws n + 1 sketches of n strokes, so larger levels keep their order


@dataclass
class LevelResult:
    strokes: int
    points: torch.Tensor  # (n, k, 2) canvas px: the best seed's strokes at its best eval, most important first
    eval_loss: float
    seed: int
    seed_losses: tuple[float, ...]  # best eval loss of every seed, in params.seeds order
    best_iteration: int
    importance: torch.Tensor  # (n,) eval-loss increase without each stroke, points in this order; (0,) over RANK_LIMIT


@dataclass
class ClipassoRun:
    levels: list[LevelResult]  # in params.strokes order
    iterations: int  # iterations the batch ran (it stops when every sketch has converged)
    seconds: float
    sketches_per_pass: int  # sketches one CLIP forward + backward took at once (device-sized)
    loss_scale: float  # the fp16 loss scale at the end (1 where no scaling runs)


def optimise(
    runtime: Runtime, target: torch.Tensor, params: ClipassoParams, progress: ProgressCallback = silent
) -> ClipassoRun:
    """Run CLIPasso on a (1, 3, 224, 224) target in [0, 1] (background already whitened); each
    level's strokes come most important first."""
    started = time.perf_counter()
    target = target.to(runtime.device)
    progress(Progress("init", 0, 1, detail="saliency and edges"))
    start = initial_strokes(runtime, target, params)
    label = f"{count(len(params.strokes), 'level')} x {count(len(params.seeds), 'seed')}"
    run = descend(runtime, target, start, params, params.half_width, progress, label)
    levels = []
    S = len(params.seeds)
    for level, n in enumerate(params.strokes):
        progress(Progress("rank", level, len(params.strokes), detail="strokes by importance"))
        rows = slice(level * S, (level + 1) * S)
        seed_losses = run.loss[rows]
        pick = level * S + int(seed_losses.argmin())
        points = run.points[pick, :n]
        scores = ranked_importance(runtime, target, points, params.half_width)
        order = by_importance(scores) if len(scores) else torch.arange(n)
        levels.append(
            LevelResult(
                strokes=n,
                points=points[order],
                importance=scores[order] if len(scores) else scores,
                eval_loss=float(run.loss[pick]),
                seed=params.seeds[pick - level * S],
                seed_losses=tuple(float(v) for v in seed_losses),
                best_iteration=int(run.iteration[pick]),
            )
        )
    return ClipassoRun(levels, run.ran, time.perf_counter() - started, run.sketches_per_pass, run.loss_scale)


def initial_strokes(runtime: Runtime, target: torch.Tensor, params: ClipassoParams) -> torch.Tensor:
    """(levels x seeds, max strokes, k, 2) canvas px: saliency x XDoG sampling per seed
    (docs/method.md#stroke-initialisation).

    Sketch i is level i // len(seeds) with seed seeds[i % len(seeds)]; unused rows are parked.
    """
    saliency, ink = salient_edges(runtime, target)
    distribution = start_distribution(saliency, ink, params.temperature)
    k = params.control_points
    points = torch.full((len(params.strokes) * len(params.seeds), max(params.strokes), k, 2), PARKED)
    for level, n in enumerate(params.strokes):
        for s, seed in enumerate(params.seeds):
            generator = torch.Generator().manual_seed(seed)
            points[level * len(params.seeds) + s, :n] = sample_strokes(distribution, n, k, generator, params.walk_step)
    return points


# --- the optimisation (docs/method.md#clipasso-optimisation) ---------------------------------------


@dataclass
class Descent:
    points: torch.Tensor  # (K, n, k, 2) canvas px, on the CPU: each sketch at its best eval
    loss: torch.Tensor  # (K,) each sketch's best eval loss
    iteration: torch.Tensor  # (K,) long: the iteration of that eval
    ran: int  # iterations the batch ran
    sketches_per_pass: int  # sketches one CLIP forward + backward took at once
    loss_scale: float  # the fp16 loss scale at the end (1 where no scaling runs)


def descend(
    runtime: Runtime,
    target: torch.Tensor,
    start: torch.Tensor,
    params: ClipassoParams,
    half_width: float | torch.Tensor,
    progress: ProgressCallback = silent,
    label: str = "",
    locked: torch.Tensor | None = None,
    sketches_per_pass: int | None = None,
) -> Descent:
    """CLIPasso's optimisation (docs/method.md#clipasso-optimisation) of K sketches at once, from
    `start` (K, n, k, 2) canvas px, against a (1, 3, 224, 224) target on the runtime's device.

    half_width: canvas px, one for all strokes or (K, n) per stroke. locked: (K, n) bool, strokes
    that are drawn and count in the loss but never move (their gradient is zeroed, so Adam's moments
    stay zero and the points keep their exact values). Uses params' lr, iterations, eval interval,
    stop rule, augmentations and seeds[0] (which draws the augmentations); not its stroke counts.
    sketches_per_pass: how many sketches one CLIP forward + backward takes (default: what suits the
    device, engine.budget.sketches_per_pass); every sketch's gradient is its own, so the strokes are
    the same whatever it is.

    Each iteration: one Adam step on every sketch still running (`_backward` gives the gradient and
    the clean view's loss); every eval_every iterations that loss is the eval, which `BestSoFar`
    keeps and stops converged sketches by.
    """
    device = runtime.device
    points = start.to(device, copy=True).requires_grad_()  # Adam steps in place: never on the caller's tensor
    K, n = points.shape[:2]
    widths = torch.as_tensor(half_width, dtype=torch.float32, device=device).expand(K, n)  # (K, n) px
    frozen = (torch.zeros(K, n, dtype=torch.bool) if locked is None else locked).to(device)[..., None, None]
    per_pass = sketches_per_pass or budget.sketches_per_pass(runtime, 1 + params.num_aug, K)
    views = _TargetViews(runtime, target, params)
    optimizer = torch.optim.Adam([points], lr=params.lr)
    scaler = runtime.loss_scaler()
    best = BestSoFar(points, params.min_delta)
    report = _Report(params, label, progress)
    ran = 0
    for iteration in range(params.iterations):
        active = (~best.done).nonzero().flatten()
        if len(active) == 0:
            break
        ran = iteration + 1
        optimizer.zero_grad(set_to_none=True)
        clean = _backward(runtime, points, widths, active, views, per_pass, scaler)
        assert points.grad is not None
        points.grad.masked_fill_(frozen, 0.0)
        if iteration % params.eval_every == 0:
            best.update(iteration, active, clean, points.detach())
        scaler.step(optimizer)
        scaler.update()
        report(iteration, len(active), best)
    return Descent(best.points.cpu(), best.loss, best.iteration, ran, per_pass, float(scaler.get_scale()))


class BestSoFar:
    """Each sketch's best eval so far, and the official convergence rule per sketch: an eval within
    min_delta of the best arms a flag, a second one stops that sketch; a new best (by more than
    min_delta) disarms it."""

    def __init__(self, points: torch.Tensor, min_delta: float):  # points: (K, n, k, 2)
        K = len(points)
        self.min_delta = min_delta
        self.loss = torch.full((K,), math.inf)
        self.points = points.detach().clone()
        self.iteration = torch.zeros(K, dtype=torch.long)
        self.armed = torch.zeros(K, dtype=torch.bool)
        self.done = torch.zeros(K, dtype=torch.bool)

    def update(self, iteration: int, active: torch.Tensor, eval_loss: torch.Tensor, points: torch.Tensor) -> None:
        """eval_loss (a,) of the active sketches; points (K, n, k, 2), all sketches."""
        for j, i in enumerate(active.tolist()):
            delta = eval_loss[j].item() - self.loss[i].item()
            if delta < -self.min_delta:
                self.loss[i] = eval_loss[j]
                self.points[i] = points[i]
                self.iteration[i] = iteration
                self.armed[i] = False
            elif abs(delta) <= self.min_delta:
                self.done[i] = bool(self.armed[i])
                self.armed[i] = True


class _TargetViews:
    """The augmented views of one step (docs/method.md#augmentations): num_aug augmentations per
    sketch, drawn from the bank (params.aug_bank of them, drawn once with the target's features) or
    fresh every step with the target's features computed anew (aug_bank 0, as the official code)."""

    def __init__(self, runtime: Runtime, target: torch.Tensor, params: ClipassoParams):
        self.runtime, self.target, self.num_aug = runtime, target, params.num_aug
        self.generator = torch.Generator().manual_seed(params.seeds[0] + 7)  # the job's augmentation stream
        self.bank = random_augmentations(params.aug_bank, CANVAS, self.generator) if params.aug_bank else None
        self.table = _target_table(runtime, target, self.bank) if self.bank is not None else None

    def draw(self, a: int) -> tuple[Augmentations, ResNetFeatures, torch.Tensor]:
        """For a sketches: their augmentations (a x num_aug, sketch by sketch), the target's feature
        table, and (a, views) rows into it: each sketch's clean target, then its views' targets."""
        augmentations, pick = draw_views(a, self.num_aug, CANVAS, self.bank, self.generator)
        clean = torch.zeros(a, 1, dtype=torch.long)
        if pick is not None and self.table is not None:
            return augmentations, self.table, torch.cat([clean, 1 + pick], dim=1)
        table = _target_table(self.runtime, self.target, augmentations)
        return augmentations, table, torch.cat([clean, 1 + torch.arange(a * self.num_aug).view(a, -1)], dim=1)


def _backward(
    runtime: Runtime,
    points: torch.Tensor,
    widths: torch.Tensor,
    active: torch.Tensor,
    views: _TargetViews,
    per_pass: int,
    scaler: torch.amp.GradScaler,
) -> torch.Tensor:
    """Accumulate the (scaled) loss gradient of the active sketches into points.grad, `per_pass`
    sketches per CLIP pass; return their eval losses (a,) on the CPU: each one's clean view's loss.

    points: (K, n, k, 2) canvas px, widths (K, n) px, of every sketch; active: (a,) the running ones.
    """
    a, num_aug = len(active), views.num_aug
    augmentations, table, rows = views.draw(a)
    clean = []
    for lo in range(0, a, per_pass):
        chunk = active[lo : lo + per_pass]
        c = len(chunk)
        loss = _views_loss(
            runtime,
            points[chunk],
            widths[chunk],
            augmentations[lo * num_aug : (lo + c) * num_aug],
            _gather(table, rows[lo : lo + c].flatten().to(runtime.device)),
        )  # (c, views)
        scaler.scale(loss.mean(1).sum()).backward()  # sketches are independent: each gets its own gradient
        clean.append(loss[:, 0].detach().cpu())
    return torch.cat(clean)


class _Report:
    """Progress after each iteration: the running sketches' mean best eval, an ETA and previews."""

    def __init__(self, params: ClipassoParams, label: str, progress: ProgressCallback):
        self.params, self.label, self.progress = params, label, progress
        self.start, self.sketch_iterations = time.perf_counter(), 0

    def __call__(self, iteration: int, stepped: int, best: BestSoFar) -> None:
        """After iteration `iteration`, which stepped `stepped` sketches."""
        params = self.params
        self.sketch_iterations += stepped
        per_sketch = (time.perf_counter() - self.start) / self.sketch_iterations
        still = int((~best.done).sum())
        running = best.loss[~best.done]
        self.progress(
            Progress(
                "optimise",
                iteration + 1,
                params.iterations,
                loss=float(running.mean()) if len(running) and running.isfinite().all() else None,
                detail=f"{self.label}, {still} still optimising",
                # An upper bound: every sketch still running may go on to the cap, none that stopped does.
                eta_s=per_sketch * still * (params.iterations - iteration - 1) if still else None,
                strokes=_preview_strokes(params, best),
                sketch_iteration_s=per_sketch,
                snapshot=lambda: level_strokes(params, best),
            )
        )


# --- the loss (docs/method.md#clipasso-loss) -------------------------------------------------------


def clipasso_loss(sketch: ResNetFeatures, target: ResNetFeatures, views: int) -> torch.Tensor:
    """Per-image CLIPasso loss (docs/method.md#clipasso-loss), reshaped (sketches, views).

    L2 of layer2 and layer3 activations (mean over C, H, W) + 0.1 x (1 - cos) of the embeddings.
    Averaging a row gives the loss of one sketch over its clean + augmented views.
    """

    def l2(a, b):
        return (widen(a) - widen(b)).square().flatten(1).mean(1)

    semantic = 1 - F.cosine_similarity(widen(sketch.embedding), widen(target.embedding), dim=1)
    per_image = l2(sketch.layer2, target.layer2) + l2(sketch.layer3, target.layer3) + 0.1 * semantic
    return per_image.view(-1, views)


def features(runtime: Runtime, images: torch.Tensor) -> ResNetFeatures:
    """RN101 features of (B, 3, 224, 224) images in [0, 1]."""
    visual = runtime.clip(RN101).visual
    x = normalize(images)
    if runtime.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with runtime.autocast():
        return resnet_features(visual, x)


def _gather(table: ResNetFeatures, index: torch.Tensor) -> ResNetFeatures:
    return ResNetFeatures(table.layer2[index], table.layer3[index], table.embedding[index])


@torch.no_grad()
def _target_table(runtime: Runtime, target: torch.Tensor, augmentations: Augmentations) -> ResNetFeatures:
    """Features of the clean target (row 0) and of its augmentations (rows 1..)."""
    parts = [features(runtime, target)]
    parts += [features(runtime, views) for views in augmented_copies(target, augmentations)]
    return ResNetFeatures(*(torch.cat([getattr(p, f) for p in parts]) for f in ("layer2", "layer3", "embedding")))


def _views_loss(
    runtime: Runtime,
    points: torch.Tensor,
    widths: torch.Tensor,
    augmentations: Augmentations,
    target_features: ResNetFeatures,
) -> torch.Tensor:
    """(c, views) CLIPasso loss of c sketches (c, n, k, 2) canvas px with half-widths (c, n) px, each
    seen clean and through its num_aug augmentations (c x num_aug of them, sketch by sketch), against
    the target's features of the same views ((c x views) rows, sketch by sketch)."""
    sketches = runtime.rasterize(points, widths, (CANVAS, CANVAS))  # (c, 3, H, W)
    images = augmented_views(sketches, augmentations)  # (c, views, 3, H, W)
    return clipasso_loss(features(runtime, images.flatten(0, 1)), target_features, images.shape[1])


@torch.no_grad()
def eval_loss(
    runtime: Runtime, target: torch.Tensor, points: torch.Tensor, half_width: float | torch.Tensor
) -> torch.Tensor:
    """(B,) the eval loss (the clean view alone, no augmentation) of B sketches (B, n, k, 2) canvas px;
    half_width: canvas px, one for all or (B, n)."""
    device = runtime.device
    sketches = runtime.rasterize(points.to(device), torch.as_tensor(half_width, device=device), (CANVAS, CANVAS))
    return clipasso_loss(features(runtime, sketches), features(runtime, target.to(device)), views=1)[:, 0]


@torch.no_grad()
def stroke_importance(
    runtime: Runtime, target: torch.Tensor, points: torch.Tensor, half_width: float | torch.Tensor
) -> torch.Tensor:
    """(n,) importance of each stroke of one sketch (n, k, 2) canvas px (docs/method.md#stroke-importance):
    how much the eval loss grows without it. A left-out stroke is drawn with width 0, which draws nothing."""
    n = len(points)
    widths = torch.as_tensor(half_width, dtype=torch.float32).expand(n)  # (n,) px

    def loss(drawn: torch.Tensor) -> torch.Tensor:  # drawn: (B, n) bool
        return eval_loss(runtime, target, points.expand(len(drawn), -1, -1, -1), widths * drawn)

    return leave_one_out(loss, n)


def ranked_importance(
    runtime: Runtime, target: torch.Tensor, points: torch.Tensor, half_width: float | torch.Tensor
) -> torch.Tensor:
    """`stroke_importance`, or an empty tensor for a sketch of more than RANK_LIMIT strokes (not ranked)."""
    return stroke_importance(runtime, target, points, half_width) if len(points) <= RANK_LIMIT else torch.empty(0)


def _preview_strokes(params: ClipassoParams, best: BestSoFar) -> torch.Tensor | None:
    """(n, k, 2) canvas px: the best seed's best strokes of the first level still optimising (the
    last level once all are done); None before any sketch has an eval."""
    S = len(params.seeds)
    running = [level for level in range(len(params.strokes)) if not bool(best.done[level * S : (level + 1) * S].all())]
    level = running[0] if running else len(params.strokes) - 1
    losses = best.loss[level * S : (level + 1) * S]
    if not bool(losses.isfinite().any()):
        return None
    return best.points[level * S + int(losses.argmin()), : params.strokes[level]]


def level_strokes(params: ClipassoParams, best: BestSoFar) -> list[torch.Tensor] | None:
    """[(n, k, 2) canvas px per level, in params.strokes order]: each level's best seed's strokes at
    its best eval so far, in optimisation order (not ranked: ranking costs n + 1 renders per level);
    None until every level has an eval. A copy: the method goes on changing its own."""
    S = len(params.seeds)
    picks = []
    for level, n in enumerate(params.strokes):
        losses = best.loss[level * S : (level + 1) * S]
        if not bool(losses.isfinite().any()):
            return None
        picks.append(best.points[level * S + int(losses.argmin()), :n].detach().cpu().clone())
    return picks
