"""CLIPascene (docs/method.md#clipascene): a fidelity x simplicity matrix of sketches for each part of a scene.

A "problem" is one part (object or background) x one fidelity layer x one seed. Every problem of a
job is independent until a stage ends, so all of them form ONE batch, as CLIPasso batches levels x
seeds: one rasteriser call, ViT-B/32 calls grouped by how deep they must go, and one batched Adam
step per iteration. Between stages each part x layer keeps its best seed, and the next stage starts
every seed from it: its networks, their Adam states and MLP_loc's input.

Stages:
- Fidelity (row 0, docs/method.md#fidelity-axis): MLP_loc moves 64 strokes; loss = L2 of ViT layer
  outputs at the column's layer (objects add layer 4 at weight 0.5, the two terms balanced by
  gradient norms); the lowest eval keeps.
- Simplicity (rows 1..levels, docs/method.md#simplicity-axis): MLP_simp adds a presence per stroke
  (Gumbel-softmax, used as width); loss = balanced CLIP and sparsity terms + the ratio term for
  r_j = r_1 x 2^(-step x (j-1)); the eval with the lowest summed z-scores keeps; row j + 1
  warm-starts from row j's pick.

Where and why this differs from the official code (batching, summed term gradients, evals from the
clean view, the augmentation bank, checkpoints as evaluated, deterministic export):
docs/method.md#deliberate-differences-from-the-official-code.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from bridge.params import SceneParams
from engine.clip.features import attention_saliency, normalize, vit_block_outputs
from engine.clip.models import VIT_B32
from engine.methods.augment import Augmentations, augment, bank_size, random_augmentations
from engine.methods.clipasso import FEATURE_CHUNK
from engine.methods.init import sample_strokes, start_distribution, xdog_ink
from engine.methods.mlp import (
    BatchedAdam,
    BatchedMLP,
    balance_weights,
    expected_keep,
    gumbel_keep,
    location_mlp,
    simplicity_mlp,
)
from engine.preprocess import CANVAS
from engine.progress import Progress, ProgressCallback, silent
from engine.render.bezier import sample_polyline
from engine.runtime import Runtime

OBJECT, BACKGROUND = "object", "background"


@dataclass(frozen=True)
class SceneTarget:
    """One part of the scene to sketch, on the 224 canvas."""

    name: str  # OBJECT or BACKGROUND
    image: torch.Tensor  # (1, 3, 224, 224) in [0, 1]

    @property
    def is_object(self) -> bool:
        return self.name == OBJECT


@dataclass
class CellResult:
    """One matrix cell of one part, on the canvas."""

    row: int  # 0: the fidelity sketch; 1..levels: simplified
    points: torch.Tensor  # (n, k, 2) canvas px: every stroke, as evaluated at the pick
    keep: torch.Tensor  # (n,) bool: exported strokes (row 0: all)
    importance: torch.Tensor  # (n,) keep probability (row 0: row 1's, when there is one)
    seed: int
    best_iteration: int
    losses: dict[str, float]  # unweighted eval losses at the pick: "layer L", "sparse"
    ratio: float | None = None  # r_j of a simplified row
    presence: torch.Tensor | None = None  # (n,) expected presence at the pick, the export's width factor; None: 1


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


@dataclass
class _Terms:
    """One forward pass of the active problems."""

    points: torch.Tensor  # (a, n, k, 2) evaluated strokes
    layer: torch.Tensor  # (a, views) L2 at the column's layer
    extra: torch.Tensor  # (a, views) L2 at the object layer (0 where the problem has no such term)
    sparse: torch.Tensor | None  # (a,) L_sparse, simplicity only
    keep_p: torch.Tensor | None  # (a, n) keep probabilities, simplicity only


class _Problems:
    """The batch: static facts per problem, both networks, their optimisers, and the targets."""

    def __init__(self, runtime: Runtime, targets: list[SceneTarget], params: SceneParams):
        self.runtime, self.targets, self.params = runtime, targets, params
        device = runtime.device
        rows = [(p, layer, seed) for p in range(len(targets)) for layer in params.layers for seed in params.seeds]
        self.B, self.S = len(rows), len(params.seeds)
        self.part = torch.tensor([r[0] for r in rows])
        self.layer = torch.tensor([r[1] for r in rows])
        self.seed = [r[2] for r in rows]
        self.is_object = torch.tensor([targets[r[0]].is_object for r in rows])
        self.has_extra = self.is_object & (self.layer != params.object_layer)
        self.generator = torch.Generator().manual_seed(params.seeds[0] + 7)
        self.views = 1 + params.num_aug

        distributions = [self._distribution(t.image) for t in targets]
        self.init_points = torch.stack(
            [
                sample_strokes(
                    distributions[p],
                    params.strokes,
                    params.control_points,
                    torch.Generator().manual_seed(seed),
                    params.walk_step,
                )
                for p, _, seed in rows
            ]
        )  # (B, n, k, 2) canvas px: the same part and seed start alike
        self.inputs = (self.init_points.flatten(1) / CANVAS * 2 - 1).to(device)  # (B, n*k*2) in [-1, 1]
        self.loc = location_mlp(self.seed, self.inputs.shape[1], params.hidden, device)
        self.loc_adam = BatchedAdam(self.loc.parameters(), params.loc_lr)
        self.simp: BatchedMLP | None = None
        self.simp_adam: BatchedAdam | None = None
        self.simp_input = torch.full((self.B, params.strokes), params.simplicity_input, device=device)
        self.on_canvas = torch.ones(self.B, params.strokes, device=device)
        self.r1 = torch.zeros(self.B, dtype=torch.float64)  # r_1 per problem, set by the fidelity stage

        layers = sorted(set(params.layers) | ({params.object_layer} if bool(self.is_object.any()) else set()))
        self.feature_layers = layers
        bank = bank_size(params.aug_bank, torch.device(device))
        self.bank = random_augmentations(bank, CANVAS, self.generator) if bank else None
        tables = [_target_table(runtime, t.image.to(device), layers, self.bank) for t in targets]
        # (parts, 1 + bank, 50, D) per layer: row 0 the clean target, then its augmentations.
        self.tables = {name: torch.stack([t[name] for t in tables]) for name in layers}

    def _distribution(self, target: torch.Tensor) -> torch.Tensor:
        """(224, 224) start-point probabilities: saliency x XDoG (docs/method.md#stroke-initialisation), as CLIPasso."""
        x = normalize(target.to(self.runtime.device))
        with self.runtime.autocast():
            saliency = attention_saliency(self.runtime.clip(VIT_B32).visual, x)[0].float().cpu()
        return start_distribution(saliency, xdog_ink(x[0].float().cpu()), self.params.temperature)

    def training_state(self) -> list[torch.Tensor]:
        """Per-problem tensors (dim 0) that decide where a problem's strokes go: MLP_loc's input, both
        networks and their Adam states. A warm start copies all of them: a network is only meaningful
        on the input it was trained on (the official code feeds every seed the winner's input too)."""
        state = [self.inputs, *self.loc.parameters(), *self.loc_adam.state()]
        if self.simp is not None:
            state += [*self.simp.parameters(), *self.simp_adam.state()]
        return state

    def start_simplicity(self) -> None:
        self.simp = simplicity_mlp(self.seed, self.params.strokes, self.params.hidden, self.runtime.device)
        self.simp_adam = BatchedAdam(self.simp.parameters(), self.params.simplicity_lr)

    def group_rows(self, group: int) -> torch.Tensor:
        """Rows of part x layer column `group` (one per seed)."""
        return torch.arange(group * self.S, (group + 1) * self.S)

    def shown_groups(self) -> list[tuple[str, int]]:
        """(part name, column group) of what live previews show per part: the first fidelity layer's
        column, the one the SVG shows first."""
        return [(t.name, p * len(self.params.layers)) for p, t in enumerate(self.targets)]

    @torch.no_grad()
    def clean_points(self) -> torch.Tensor:
        """(B, n, k, 2) MLP_loc's strokes without the per-forward noise."""
        return self._to_canvas(self.loc(self.inputs), None)

    def _to_canvas(self, offsets: torch.Tensor, rows) -> torch.Tensor:
        x = self.inputs if rows is None else self.inputs[rows]
        norm = x + self.params.offset_scale * offsets
        return ((norm + 1) * (CANVAS / 2)).view(len(x), self.params.strokes, self.params.control_points, 2)

    def forward(self, active: torch.Tensor, simplify: bool) -> _Terms:
        """Render the active problems' sketches and measure every loss term
        (docs/method.md#fidelity-axis and #simplicity-axis)."""
        p = self.params
        rows = None if len(active) == self.B else active.to(self.inputs.device)
        points = self._to_canvas(self.loc(self.inputs if rows is None else self.inputs[rows], rows), rows)
        noise = torch.randn(points.shape, generator=self.generator).to(points.device)
        points = points + p.point_noise * noise
        sparse = keep_p = None
        half_width: float | torch.Tensor = p.half_width
        if simplify:
            keep_p = self.simp(self.simp_input if rows is None else self.simp_input[rows], rows)  # (a, n)
            on = self.on_canvas if rows is None else self.on_canvas[rows]
            presence = gumbel_keep(keep_p, p.gumbel_tau, self.generator) * on
            half_width = p.half_width * presence
            sparse = presence.sum(1) / on.sum(1).clamp(min=1)
        sketches = self.runtime.rasterize(points, half_width, (CANVAS, CANVAS))  # (a, 3, H, W)
        a = len(active)
        if self.bank is not None:
            pick = torch.randint(len(self.bank), (a, p.num_aug), generator=self.generator)
            augmentations = self.bank[pick.flatten()]
        else:
            pick, augmentations = None, random_augmentations(a * p.num_aug, CANVAS, self.generator)
        augmented = augment(sketches.repeat_interleave(p.num_aug, 0), augmentations)
        images = torch.cat([sketches[:, None], augmented.view(a, p.num_aug, 3, CANVAS, CANVAS)], 1)
        layer, extra = self._clip_losses(active, images, pick, augmentations)
        return _Terms(points, layer, extra, sparse, keep_p)

    def _clip_losses(self, active, images, pick, augmentations) -> tuple[torch.Tensor, torch.Tensor]:
        """(a, views) L2 of ViT block outputs at each problem's layer, and at the object layer.

        Problems are grouped by the deepest block they need, so no image runs deeper than its loss.
        """
        p, V = self.params, self.views
        a = len(active)
        layer_loss = images.new_zeros(a, V)
        extra_loss = images.new_zeros(a, V)
        layer = self.layer[active]
        has_extra = self.has_extra[active]
        depth = torch.where(has_extra, layer.clamp(min=p.object_layer), layer)
        visual = self.runtime.clip(VIT_B32).visual
        for d in depth.unique().tolist():
            local = (depth == d).nonzero().flatten()
            wanted = sorted(set(layer[local].tolist()) | ({p.object_layer} if bool(has_extra[local].any()) else set()))
            x = normalize(images[local].flatten(0, 1))
            with self.runtime.autocast():
                outputs = vit_block_outputs(visual, x, wanted)
            mine = (local[:, None].cpu() * p.num_aug + torch.arange(p.num_aug)).flatten()  # their augmentations
            targets = self._target_features(
                active[local],
                None if pick is None else pick[local],
                None if pick is not None else augmentations[mine],
                wanted,
            )
            for name in wanted:
                per_image = (outputs[name].float() - targets[name]).square().flatten(1).mean(1).view(len(local), V)
                uses = layer[local] == name
                layer_loss[local[uses]] = per_image[uses]
                if name == p.object_layer:
                    extra_loss[local[has_extra[local]]] = per_image[has_extra[local]]
        return layer_loss, extra_loss

    def _target_features(self, rows, pick, fresh, layers) -> dict[int, torch.Tensor]:
        """Target features (len(rows) * views, 50, D) matching each sketch view: from the bank (`pick`)
        or computed now for `fresh` augmentations (num_aug per row, row by row) as the official code."""
        V = self.views
        out = {}
        parts = self.part[rows]
        if pick is not None:
            index = torch.cat([torch.zeros(len(rows), 1, dtype=torch.long), 1 + pick], 1)  # (r, V)
            for name in layers:
                out[name] = self.tables[name][parts[:, None].expand(-1, V), index].flatten(0, 1)
            return out
        per_row = []
        for i, q in enumerate(parts.tolist()):
            own = fresh[i * self.params.num_aug : (i + 1) * self.params.num_aug]
            table = _target_table(self.runtime, self.targets[q].image.to(self.inputs.device), layers, own)
            per_row.append(table)
        return {name: torch.cat([t[name] for t in per_row]) for name in layers}


@torch.no_grad()
def _target_table(
    runtime: Runtime, target: torch.Tensor, layers: list[int], augmentations: Augmentations | None
) -> dict[int, torch.Tensor]:
    """Block outputs (1 + augmentations, 50, D) fp32 of the clean target and of its augmentations."""
    visual = runtime.clip(VIT_B32).visual
    images = [target]
    if augmentations is not None:
        for lo in range(0, len(augmentations), FEATURE_CHUNK):
            chunk = augmentations[lo : lo + FEATURE_CHUNK]
            images.append(augment(target.expand(len(chunk), -1, -1, -1), chunk))
    parts = []
    for chunk in torch.cat(images).split(FEATURE_CHUNK):
        with runtime.autocast():
            parts.append(vit_block_outputs(visual, normalize(chunk), layers))
    return {name: torch.cat([p[name] for p in parts]).float() for name in layers}


def on_canvas(points: torch.Tensor, half_width: float, size: int = CANVAS) -> torch.Tensor:
    """(..., n) 1.0 where a stroke (..., n, k, 2) puts ink on the size x size canvas, else 0.0.

    The official code renders each stroke alone at the start of a run; a stroke inks the canvas
    when its curve comes within the half-width of a pixel centre, i.e. enters (-hw, size + hw)^2.
    """
    curve = sample_polyline(points.float(), 64)
    inside = ((curve > -half_width) & (curve < size + half_width)).all(-1)
    return inside.any(-1).float()


def row_ratio(r1, step, row: int):
    """The exponential schedule (docs/method.md#simplicity-axis): row j >= 1 trains to r_1 x 2^(-step x (j - 1)),
    rounded to 3 decimals as the official scripts pass it on. Works on floats and on per-problem (float64)
    tensors alike."""
    ratio = r1 * 2.0 ** (-step * (row - 1))
    return torch.round(ratio * 1000) / 1000 if isinstance(ratio, torch.Tensor) else round(ratio, 3)


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


def _eval_points(iterations: int, every: int, first: int) -> set[int]:
    """Iterations (0-based forwards) whose losses are evals; the stage's last one always is."""
    first = min(first, iterations)
    return {i for i in range(first, iterations + 1) if i % every == 0} | {iterations}


def optimise_scene(
    runtime: Runtime, targets: list[SceneTarget], params: SceneParams, progress: ProgressCallback = silent
) -> SceneRun:
    """The whole matrix for every part: fidelity row, then `levels` simplified rows."""
    started = time.perf_counter()
    progress(Progress("init", 0, 1, detail="saliency, edges and target features"))
    problems = _Problems(runtime, targets, params)
    clock = _Clock(params, problems, progress, len(targets))
    columns = [ColumnResult(t.name, layer) for t in targets for layer in params.layers]

    fidelity = _fidelity(problems, clock)
    for c, column in enumerate(columns):
        column.cells.append(fidelity[c])
    if params.levels:
        problems.start_simplicity()
        for j in range(1, params.levels + 1):
            for c, cell in enumerate(_simplify(problems, clock, j)):
                columns[c].cells.append(cell)
        for column in columns:  # row 0 has no presence of its own: rank its strokes as row 1 does
            column.cells[0].importance = column.cells[1].importance.clone()
    return SceneRun(columns, clock.ran, time.perf_counter() - started)


class _Clock:
    """Progress for every iteration of every stage, with the ETA of the whole job.

    `shown` is what live previews draw: {part name: (n, k, 2) canvas px} of the current best sketch
    of each part's shown column (`_Problems.shown_groups`) in the row being optimised. The stages
    keep it up to date from what they compute anyway: views in the fidelity stage; at each
    simplicity eval, the column's pick so far (a few ops on (evals, B) losses and one (n,) mask).
    Nothing is rendered or copied to the CPU unless a preview is drawn.
    """

    def __init__(self, params: SceneParams, problems: _Problems, progress: ProgressCallback, parts: int):
        self.params, self.progress, self.ran = params, progress, 0
        self.fidelity_total = 1 + int(
            max(
                _fidelity_iterations(params, bool(o), int(layer))
                for o, layer in zip(problems.is_object, problems.layer)
            )
        )
        self.simplicity_total = 1 + params.cap(params.simplicity_iterations)
        self.total = self.fidelity_total + params.levels * self.simplicity_total
        self.columns = ", ".join(map(str, params.layers))
        self.what = " + ".join(t.name for t in problems.targets)
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


def _fidelity_iterations(params: SceneParams, is_object: bool, layer: int) -> int:
    if not is_object:
        return params.cap(params.fidelity_iterations_background)
    shallow = layer < 8
    return params.cap(params.fidelity_iterations_object_shallow if shallow else params.fidelity_iterations_object)


def _mean_abs(grads: list[torch.Tensor | None], rows: torch.Tensor, size: int) -> torch.Tensor:
    """(a,) mean |gradient| over one network's parameters, per problem (the balancing norm)."""
    return sum(g[rows].abs().flatten(1).sum(1) for g in grads if g is not None) / size + torch.zeros(
        len(rows), device=rows.device
    )


def _grads(term: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor | None]:
    """d term / d params; None for parameters the term does not depend on."""
    return list(torch.autograd.grad(term, params, retain_graph=True, allow_unused=True))


def _combine(
    terms: list[tuple[torch.Tensor, list[torch.Tensor | None]]], rows: torch.Tensor | None, params: list[torch.Tensor]
) -> list[torch.Tensor]:
    """Per parameter, sum over terms of scale (a,) x gradient rows: the weighted total's gradient."""
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


def _fidelity(problems: _Problems, clock: _Clock) -> list[CellResult]:
    """Row 0 of every column: MLP_loc alone, best weighted eval of each seed, best seed kept."""
    p = problems.params
    iterations = torch.tensor(
        [_fidelity_iterations(p, bool(o), int(layer)) for o, layer in zip(problems.is_object, problems.layer)]
    )
    evals = [_eval_points(int(n), p.fidelity_eval_every, p.fidelity_eval_from) for n in iterations]
    B = problems.B
    best_loss = torch.full((B,), math.inf)
    best_points = problems.init_points.clone()
    best_iteration = torch.zeros(B, dtype=torch.long)
    best_terms = torch.zeros(B, 2)  # unweighted layer and object-layer eval losses at the best eval
    best_loc = [t.detach().clone() for t in problems.loc.parameters()]
    loc_params = problems.loc.parameters()
    for i in range(int(iterations.max()) + 1):
        active = (iterations >= i).nonzero().flatten()
        terms = problems.forward(active, simplify=False)
        dev = terms.layer.device
        rows = active.to(dev)
        extra = problems.has_extra[active].to(dev)
        g_layer = _grads(terms.layer.mean(1).sum(), loc_params)
        coeff_layer = torch.ones(len(active), device=dev)
        coeff_extra = torch.zeros(len(active), device=dev)
        grad_terms = [(coeff_layer, g_layer)]
        if bool(extra.any()):  # objects: balance layer L and the object layer by gradient norms
            g_extra = _grads(terms.extra.mean(1).sum(), loc_params)
            norms = torch.stack(
                [_mean_abs(g_layer, rows, problems.loc.size), _mean_abs(g_extra, rows, problems.loc.size)]
            )
            weights = balance_weights(norms)
            coeff_layer = torch.where(extra, weights[0], coeff_layer)
            coeff_extra = torch.where(extra, p.object_layer_weight * weights[1], coeff_extra)
            grad_terms = [(coeff_layer, g_layer), (coeff_extra, g_extra)]
        grads = _combine(grad_terms, None if len(active) == B else rows, loc_params)
        weighted = coeff_layer * terms.layer.mean(1) + coeff_extra * terms.extra.mean(1)
        clean = (coeff_layer * terms.layer[:, 0] + coeff_extra * terms.extra[:, 0]).detach().cpu()
        for j, b in enumerate(active.tolist()):
            if i in evals[b] and clean[j] < best_loss[b]:
                best_loss[b], best_iteration[b] = clean[j], i
                best_points[b] = terms.points[j].detach().cpu()
                best_terms[b] = torch.stack([terms.layer[j, 0], terms.extra[j, 0]]).detach().cpu()
                for saved, live in zip(best_loc, loc_params):
                    saved[b] = live[b].detach()
        clock.shown = _fidelity_shown(problems, active, terms.points, best_loss, best_points)
        problems.loc_adam.step(grads, rows)
        clock.tick(i + 1, clock.fidelity_total, 0, float(weighted.detach().mean()))

    cells = []
    for group in range(B // problems.S):
        rows = problems.group_rows(group)
        b = int(rows[best_loss[rows].argmin()])
        # r_1 = 1 / the best fidelity sketch's CLIP loss. Objects add the unweighted object-layer loss,
        # which a column at that layer counts twice (the official code adds the layer's loss to itself).
        object_loss = best_terms[b, 1] if problems.has_extra[b] else best_terms[b, 0]
        clip_loss = float(best_terms[b, 0] + (object_loss if problems.is_object[b] else 0))
        problems.r1[rows] = 1.0 / max(clip_loss, 1e-12)
        with torch.no_grad():  # every seed continues from the winner: its network, on its input
            for saved, live in zip(best_loc, loc_params):
                live[rows] = saved[b]
            problems.inputs[rows.to(problems.inputs.device)] = problems.inputs[b].clone()
        layer = int(problems.layer[b])
        losses = {f"layer {layer}": float(best_terms[b, 0])}
        if problems.has_extra[b]:
            losses[f"layer {p.object_layer}"] = float(best_terms[b, 1])
        cells.append(
            CellResult(
                0,
                best_points[b],
                torch.ones(p.strokes, dtype=torch.bool),
                torch.ones(p.strokes),
                problems.seed[b],
                int(best_iteration[b]),
                losses,
            )
        )
    return cells


def _fidelity_shown(
    problems: _Problems, active: torch.Tensor, points: torch.Tensor, best_loss: torch.Tensor, best_points: torch.Tensor
) -> dict[str, torch.Tensor]:
    """`_Clock.shown` in the fidelity stage: the shown column's best seed at its best eval so far;
    before the column's first eval, the strokes its first seed just drew (points: (a, n, k, 2) of
    the active problems)."""
    shown = {}
    for name, group in problems.shown_groups():
        rows = problems.group_rows(group)
        losses = best_loss[rows]
        if bool(losses.isfinite().any()):
            shown[name] = best_points[int(rows[losses.argmin()])]
        else:  # a column without an eval yet is still running: its first seed is active
            shown[name] = points[int((active == rows[0]).nonzero()[0, 0])].detach()
    return shown


def _simplify(problems: _Problems, clock: _Clock, row: int) -> list[CellResult]:
    """Simplified row `row` of every column (docs/method.md#simplicity-axis)."""
    p = problems.params
    B, S = problems.B, problems.S
    dev = problems.inputs.device
    every = torch.arange(B)
    rows_dev = every.to(dev)
    if row == 1:  # MLP_loc from the fidelity pick, with a fresh optimiser; MLP_simp fresh per seed
        problems.loc_adam.reset(rows_dev)
    step = torch.tensor(
        [
            (p.steps_object if o else p.steps_background)[int(layer)]
            for o, layer in zip(problems.is_object, problems.layer)
        ],
        dtype=torch.float64,
    )
    ratio = row_ratio(problems.r1, step, row).to(dev, torch.float32)
    problems.on_canvas = on_canvas(problems.clean_points(), p.half_width)
    iterations = p.cap(p.simplicity_iterations)
    evals = sorted(_eval_points(iterations, p.simplicity_eval_every, p.simplicity_eval_from))
    loc_params, simp_params = problems.loc.parameters(), problems.simp.parameters()
    all_params = loc_params + simp_params
    extra = problems.has_extra.to(dev)
    series, snapshots = [], []
    for i in range(iterations + 1):
        terms = problems.forward(every, simplify=True)
        layer_train, extra_train = terms.layer.mean(1), terms.extra.mean(1)
        g_layer = _grads(layer_train.sum(), all_params)
        g_sparse = _grads(terms.sparse.sum(), all_params)
        g_extra = _grads(extra_train.sum(), all_params) if bool(extra.any()) else [None] * len(all_params)
        simp_slice = slice(len(loc_params), None)
        norms = torch.stack(
            [_mean_abs(g[simp_slice], rows_dev, problems.simp.size) for g in (g_layer, g_extra, g_sparse)]
        )
        with_extra = balance_weights(norms)
        without = balance_weights(norms[[0, 2]])
        w_layer = torch.where(extra, with_extra[0], without[0])
        w_extra = torch.where(extra, p.object_layer_weight * with_extra[1], torch.zeros_like(w_layer))
        w_sparse = torch.where(extra, with_extra[2], without[1])
        clip_train = layer_train + torch.where(extra, extra_train, torch.zeros_like(extra_train))
        gap = terms.sparse - ratio * clip_train  # L_ratio = gap^2, on the unweighted CLIP terms
        # d(gap^2) = 2 gap (dS - r dC): the ratio term's gradient from the terms' own.
        c_layer = (w_layer - 2 * gap * ratio).detach()
        c_extra = (w_extra - torch.where(extra, 2 * gap * ratio, torch.zeros_like(gap))).detach()
        c_sparse = (w_sparse + 2 * gap).detach()
        grads = _combine([(c_layer, g_layer), (c_extra, g_extra), (c_sparse, g_sparse)], None, all_params)
        total = w_layer * layer_train + w_extra * extra_train + w_sparse * terms.sparse + gap.square()
        if i in evals:
            series.append(
                torch.stack(
                    [terms.layer[:, 0], torch.where(extra, terms.extra[:, 0], torch.zeros_like(gap)), terms.sparse]
                )
                .detach()
                .cpu()
            )
            snapshots.append(_snapshot(problems, terms))
            picks = zscore_pick(torch.stack(series, 1))
            clock.shown = {}
            for name, group in problems.shown_groups():
                b, snap, presence = _pick(problems, picks, snapshots, group)
                clock.shown[name] = snap["points"][b][presence > p.keep_threshold]
        problems.loc_adam.step(grads[: len(loc_params)], rows_dev)
        problems.simp_adam.step(grads[len(loc_params) :], rows_dev)
        clock.tick(i + 1, clock.simplicity_total, row, float(total.detach().mean()))

    picks = zscore_pick(torch.stack(series, 1))  # series: (terms, evals, B)
    cells = []
    for group in range(B // S):
        rows = problems.group_rows(group)
        b, snap, presence = _pick(problems, picks, snapshots, group)
        _warm_start(problems, snap, b, rows.to(dev))
        e = int(picks[0][b])
        layer = int(problems.layer[b])
        losses = {f"layer {layer}": float(series[e][0, b]), "sparse": float(series[e][2, b])}
        if problems.has_extra[b]:
            losses[f"layer {p.object_layer}"] = float(series[e][1, b])
        cells.append(
            CellResult(
                row,
                snap["points"][b].cpu(),
                (presence > p.keep_threshold).cpu(),
                snap["keep_p"][b].cpu(),
                problems.seed[b],
                evals[e],
                losses,
                float(ratio[b]),
                presence.cpu(),
            )
        )
    return cells


def _pick(
    problems: _Problems, picks: tuple[torch.Tensor, torch.Tensor], snapshots: list[dict], group: int
) -> tuple[int, dict, torch.Tensor]:
    """A column's pick by `zscore_pick`'s (best eval (B,), summed z-score (B,)) over the evals so far:
    (the problem of its best seed, that seed's snapshot at its best eval, the strokes' presence (n,))."""
    best_eval, zsum = picks
    rows = problems.group_rows(group)
    b = int(rows[zsum[rows].argmin()])
    snap = snapshots[int(best_eval[b])]
    return b, snap, expected_keep(snap["keep_p"][b], problems.params.gumbel_tau) * snap["on_canvas"][b]


def _snapshot(problems: _Problems, terms: _Terms) -> dict:
    """Everything a pick needs: the sketch as evaluated, and the full training state to warm-start from."""
    return {
        "state": [t.detach().clone() for t in problems.training_state()],
        "points": terms.points.detach().clone(),
        "keep_p": terms.keep_p.detach().clone(),
        "on_canvas": problems.on_canvas.clone(),
    }


@torch.no_grad()
def _warm_start(problems: _Problems, snap: dict, source: int, rows: torch.Tensor) -> None:
    """Every seed of a column continues from problem `source`'s picked state (docs/method.md#simplicity-axis)."""
    for live, saved in zip(problems.training_state(), snap["state"]):
        live[rows] = saved[source]
