"""The batch a CLIPascene job optimises, and what one forward pass of it measures (docs/method.md#clipascene).

A problem is one part (object or background) x one fidelity layer x one seed. Every problem of a
job is independent until a stage ends, so all of them form ONE batch, as CLIPasso batches levels x
seeds: one rasteriser call, ViT-B/32 calls grouped by how deep they must go, and one batched Adam
step per iteration. `SceneBatch` holds what never changes during a job (which part, layer and seed
each problem is, the targets' features, the random stream); `SceneNetworks` holds what the stages
train (MLP_loc's input, both networks and their Adam states). The stages (engine.methods.
scene_fidelity, engine.methods.scene_simplify) take both and return their matrix cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bridge.params import SceneParams
from engine.clip.features import normalize, vit_block_outputs
from engine.clip.models import VIT_B32
from engine.methods.augment import (
    FEATURE_CHUNK,
    Augmentations,
    augmented_copies,
    augmented_views,
    bank_size,
    draw_views,
    random_augmentations,
)
from engine.methods.init import sample_strokes, target_start_distribution
from engine.methods.mlp import BatchedAdam, BatchedMLP, gumbel_keep, location_mlp, simplicity_mlp
from engine.preprocess import CANVAS
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
    """One matrix cell of one part, on the canvas: what a stage returns per column."""

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
class Terms:
    """One forward pass of the active problems (a of them): the strokes it drew and each loss term."""

    points: torch.Tensor  # (a, n, k, 2) canvas px, as evaluated (the forward's noise included)
    layer_loss: torch.Tensor  # (a, views) L2 of the ViT outputs at the column's layer
    object_loss: torch.Tensor  # (a, views) L2 at the object layer; 0 where the problem has no such term
    sparse: torch.Tensor | None  # (a,) L_sparse: the simplicity axis only
    keep_p: torch.Tensor | None  # (a, n) MLP_simp's keep probabilities: the simplicity axis only


@dataclass
class SceneNetworks:
    """What the stages train, one row (dim 0) per problem; the stages update it in place.

    MLP_loc (docs/method.md#fidelity-axis) moves the strokes; MLP_simp (docs/method.md#simplicity-axis)
    exists from the first simplified row on.
    """

    inputs: torch.Tensor  # (B, n*k*2) in [-1, 1]: MLP_loc's input, the initial strokes it moves
    loc: BatchedMLP
    loc_adam: BatchedAdam
    simp_input: torch.Tensor  # (B, n): MLP_simp's constant input
    simp: BatchedMLP | None = None
    simp_adam: BatchedAdam | None = None

    def training_state(self) -> list[torch.Tensor]:
        """Per-problem tensors (dim 0) that decide where a problem's strokes go: MLP_loc's input, both
        networks and their Adam states. A warm start copies all of them: a network is only meaningful
        on the input it was trained on (the official code feeds every seed the winner's input too)."""
        state = [self.inputs, *self.loc.parameters(), *self.loc_adam.state()]
        if self.simp is not None and self.simp_adam is not None:
            state += [*self.simp.parameters(), *self.simp_adam.state()]
        return state

    @torch.no_grad()
    def warm_start(self, saved: list[torch.Tensor], source: int, rows: torch.Tensor) -> None:
        """Problems `rows` continue from problem `source` of `saved` (a `training_state()` copy)."""
        for live, kept in zip(self.training_state(), saved):
            live[rows] = kept[source]


class SceneBatch:
    """Every problem's static facts, the targets' features, the job's random stream, and the forward pass.

    Problems are ordered part by part, then layer (params order), then seed: column `group` (one
    part x layer) holds the S consecutive problems `group_rows(group)`.
    """

    def __init__(self, runtime: Runtime, targets: list[SceneTarget], params: SceneParams):
        self.runtime, self.targets, self.params = runtime, targets, params
        device = runtime.device
        rows = [(p, layer, seed) for p in range(len(targets)) for layer in params.layers for seed in params.seeds]
        self.B, self.S = len(rows), len(params.seeds)
        self.part = torch.tensor([r[0] for r in rows])
        self.layer = torch.tensor([r[1] for r in rows])
        self.seed = [r[2] for r in rows]
        self.is_object = torch.tensor([targets[r[0]].is_object for r in rows])
        # Objects add the object layer's term, except in the column at that layer (docs/method.md#fidelity-axis).
        self.has_object_term = self.is_object & (self.layer != params.object_layer)
        self.generator = torch.Generator().manual_seed(params.seeds[0] + 7)  # noise, Gumbel samples, views
        self.views = 1 + params.num_aug

        distributions = [target_start_distribution(runtime, t.image.to(device), params.temperature) for t in targets]
        self.start_points = torch.stack(
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

        object_layer = {params.object_layer} if bool(self.is_object.any()) else set()
        self.feature_layers = sorted(set(params.layers) | object_layer)
        bank = bank_size(params.aug_bank, torch.device(device))
        self.bank = random_augmentations(bank, CANVAS, self.generator) if bank else None
        tables = [_target_table(runtime, t.image.to(device), self.feature_layers, self.bank) for t in targets]
        # (parts, 1 + bank, 50, D) per layer: row 0 the clean target, then its augmentations.
        self.tables = {name: torch.stack([t[name] for t in tables]) for name in self.feature_layers}

    def location_networks(self) -> SceneNetworks:
        """Fresh MLP_loc per seed, fed the problem's initial strokes; no MLP_simp yet."""
        p, device = self.params, self.runtime.device
        inputs = (self.start_points.flatten(1) / CANVAS * 2 - 1).to(device)  # (B, n*k*2) in [-1, 1]
        loc = location_mlp(self.seed, inputs.shape[1], p.hidden, device)
        simp_input = torch.full((self.B, p.strokes), p.simplicity_input, device=device)
        return SceneNetworks(inputs, loc, BatchedAdam(loc.parameters(), p.loc_lr), simp_input)

    def add_simplicity_networks(self, nets: SceneNetworks) -> None:
        """A fresh MLP_simp per seed, and its optimiser (docs/method.md#simplicity-axis)."""
        nets.simp = simplicity_mlp(self.seed, self.params.strokes, self.params.hidden, self.runtime.device)
        nets.simp_adam = BatchedAdam(nets.simp.parameters(), self.params.simplicity_lr)

    def group_rows(self, group: int) -> torch.Tensor:
        """Rows of part x layer column `group` (one per seed)."""
        return torch.arange(group * self.S, (group + 1) * self.S)

    def shown_groups(self) -> list[tuple[str, int]]:
        """(part name, column group) of what live previews show per part: the first fidelity layer's
        column, the one the SVG shows first."""
        return [(t.name, p * len(self.params.layers)) for p, t in enumerate(self.targets)]

    @torch.no_grad()
    def clean_points(self, nets: SceneNetworks) -> torch.Tensor:
        """(B, n, k, 2) MLP_loc's strokes without the per-forward noise."""
        return self._to_canvas(nets.inputs, nets.loc(nets.inputs))

    def _to_canvas(self, inputs: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """MLP_loc's strokes (a, n, k, 2) canvas px: its input moved by offset_scale x its output."""
        norm = inputs + self.params.offset_scale * offsets
        return ((norm + 1) * (CANVAS / 2)).view(len(inputs), self.params.strokes, self.params.control_points, 2)

    def forward(self, nets: SceneNetworks, active: torch.Tensor, on_canvas: torch.Tensor | None = None) -> Terms:
        """Render the active problems' sketches and measure every loss term
        (docs/method.md#fidelity-axis and #simplicity-axis).

        on_canvas: (B, n) 1.0 for strokes that ink the canvas, on the simplicity axis, where MLP_simp's
        presence scales each stroke's width; None on the fidelity axis (every stroke at full width).
        """
        p = self.params
        rows = None if len(active) == self.B else active.to(nets.inputs.device)
        inputs = nets.inputs if rows is None else nets.inputs[rows]
        points = self._to_canvas(inputs, nets.loc(inputs, rows))
        noise = torch.randn(points.shape, generator=self.generator).to(points.device)
        points = points + p.point_noise * noise
        sparse = keep_p = None
        half_width: float | torch.Tensor = p.half_width
        if on_canvas is not None:
            assert nets.simp is not None, "the simplicity axis starts with add_simplicity_networks"
            keep_p = nets.simp(nets.simp_input if rows is None else nets.simp_input[rows], rows)  # (a, n)
            on = on_canvas if rows is None else on_canvas[rows]
            presence = gumbel_keep(keep_p, p.gumbel_tau, self.generator) * on
            half_width = p.half_width * presence
            sparse = presence.sum(1) / on.sum(1).clamp(min=1)  # L_sparse
        sketches = self.runtime.rasterize(points, half_width, (CANVAS, CANVAS))  # (a, 3, H, W)
        augmentations, pick = draw_views(len(active), p.num_aug, CANVAS, self.bank, self.generator)
        images = augmented_views(sketches, augmentations)  # (a, views, 3, H, W)
        layer_loss, object_loss = self.clip_losses(active, images, pick, augmentations)
        return Terms(points, layer_loss, object_loss, sparse, keep_p)

    def clip_losses(
        self, active: torch.Tensor, images: torch.Tensor, pick: torch.Tensor | None, augmentations: Augmentations
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(a, views) L2 of ViT block outputs at each problem's layer, and at the object layer, of the
        views `images` (a, views, 3, H, W) made with `augmentations` (bank indices `pick` (a, num_aug),
        or None where they were drawn fresh).

        Problems are grouped by the deepest block they need, so no image runs deeper than its loss.
        """
        p, V = self.params, self.views
        a = len(active)
        layer_loss = images.new_zeros(a, V)
        object_loss = images.new_zeros(a, V)
        layer = self.layer[active]
        has_object_term = self.has_object_term[active]
        depth = torch.where(has_object_term, layer.clamp(min=p.object_layer), layer)
        visual = self.runtime.clip(VIT_B32).visual
        for d in depth.unique().tolist():
            local = (depth == d).nonzero().flatten()
            object_layer = {p.object_layer} if bool(has_object_term[local].any()) else set()
            wanted = sorted(set(layer[local].tolist()) | object_layer)
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
                    object_loss[local[has_object_term[local]]] = per_image[has_object_term[local]]
        return layer_loss, object_loss

    def _target_features(
        self, rows: torch.Tensor, pick: torch.Tensor | None, fresh: Augmentations | None, layers: list[int]
    ) -> dict[int, torch.Tensor]:
        """Target features (len(rows) * views, 50, D) matching each sketch view: from the bank (`pick`)
        or computed now for `fresh` augmentations (num_aug per row, row by row) as the official code."""
        V = self.views
        parts = self.part[rows]
        if pick is not None:
            index = torch.cat([torch.zeros(len(rows), 1, dtype=torch.long), 1 + pick], 1)  # (r, V)
            return {name: self.tables[name][parts[:, None].expand(-1, V), index].flatten(0, 1) for name in layers}
        assert fresh is not None
        per_row = []
        n = self.params.num_aug
        for i, q in enumerate(parts.tolist()):
            target = self.targets[q].image.to(self.runtime.device)
            per_row.append(_target_table(self.runtime, target, layers, fresh[i * n : (i + 1) * n]))
        return {name: torch.cat([t[name] for t in per_row]) for name in layers}


@torch.no_grad()
def _target_table(
    runtime: Runtime, target: torch.Tensor, layers: list[int], augmentations: Augmentations | None
) -> dict[int, torch.Tensor]:
    """Block outputs (1 + augmentations, 50, D) fp32 of the clean target and of its augmentations."""
    visual = runtime.clip(VIT_B32).visual
    images = [target] + ([] if augmentations is None else list(augmented_copies(target, augmentations)))
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


def eval_points(iterations: int, every: int, first: int) -> set[int]:
    """Iterations (0-based forwards) whose losses are evals; the stage's last one always is."""
    first = min(first, iterations)
    return {i for i in range(first, iterations + 1) if i % every == 0} | {iterations}
