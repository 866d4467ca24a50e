"""CLIPascene (docs/method.md#clipascene) with tiny random CLIP models: its parameters, the two networks and their
optimiser, the losses' pieces, and the matrix the optimisation produces. Tiny settings (few strokes,
narrow MLPs, capped stages) keep every run to seconds on a 2-core CPU."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from bridge.errors import InputError
from bridge.params import SceneParams, SceneRequest, request_from_json, request_to_json
from engine.methods.balance import balance_weights, term_gradients, weighted_gradient
from engine.methods.clipascene import BACKGROUND, OBJECT, SceneTarget, optimise_scene
from engine.methods.mlp import BatchedAdam, expected_keep, gumbel_keep, location_mlp, simplicity_mlp
from engine.methods.scene_batch import SceneBatch, on_canvas
from engine.methods.scene_fidelity import fidelity_row
from engine.methods.scene_progress import SceneClock
from engine.methods.scene_simplify import row_ratio, simplified_row, zscore_pick
from engine.progress import silent

pytestmark = pytest.mark.filterwarnings("ignore:.*meaningless:UserWarning")

TINY = SceneParams(layers=(2, 11), levels=2, strokes=8, seeds=(0, 1000), iterations=2, hidden=32, aug_bank=8)


@pytest.fixture(scope="module")
def field_target():
    from engine.io.image import load_image
    from engine.preprocess import prepare_target
    from tests.harness.paths import FIELD

    return prepare_target(load_image(FIELD), None)[0]


def quiet_clock(params, targets):
    return SceneClock(params, [t.name for t in targets], params.cap(params.fidelity_iterations_background), silent)


def scene(runtime, target, parts=(OBJECT, BACKGROUND), **changes):
    params = dataclasses.replace(TINY, **changes)
    return optimise_scene(runtime, [SceneTarget(p, target) for p in parts], params)


# --- parameters -----------------------------------------------------------------------------------


def test_default_parameters_are_the_official_ones():
    p = SceneParams().validate()
    assert p.layers == (2, 8, 11) and p.levels == 8 and p.strokes == 64 and p.seeds == (0, 1000)
    assert (
        p.fidelity_iterations_background,
        p.fidelity_iterations_object,
        p.fidelity_iterations_object_shallow,
        p.simplicity_iterations,
    ) == (1500, 1000, 600, 400)
    assert (p.fidelity_eval_every, p.fidelity_eval_from, p.simplicity_eval_every) == (50, 400, 100)
    assert p.loc_lr == 1e-4 and p.simplicity_lr == 5e-5 and p.hidden == 1000 and p.offset_scale == 0.1
    assert p.point_noise == 1e-4 and p.gumbel_tau == 0.2 and p.keep_threshold == 0.7
    assert p.object_layer == 4 and p.object_layer_weight == 0.5 and p.simplicity_input == 1.5
    # Ratio steps of the layers the official scripts give (index = layer, counted from 0).
    assert [p.steps_background[i] for i in (2, 3, 4, 7, 8, 11)] == [0.35, 0.45, 0.45, 0.45, 0.5, 0.85]
    assert [p.steps_object[i] for i in (2, 3, 4, 7, 8, 11)] == [0.4, 0.45, 0.45, 0.4, 0.5, 0.9]


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"layers": ()}, "layers"),
        ({"layers": (-1,)}, "layers"),
        ({"layers": (2, 12)}, "layers"),
        ({"object_layer": 12}, "object layer"),
        ({"layers": (8, 8)}, "repeat"),
        ({"levels": -1}, "levels"),
        ({"levels": 17}, "levels"),
        ({"strokes": 0}, "strokes"),
        ({"seeds": ()}, "seeds"),
        ({"iterations": -1}, "iterations"),
        ({"control_points": 5}, "control points"),
        ({"half_width": math.nan}, "width"),
        ({"steps_object": (0.5,)}, "steps"),
    ],
)
def test_validate_rejects_unusable_values(changes, words):
    with pytest.raises(InputError) as info:
        dataclasses.replace(SceneParams(), **changes).validate()
    assert words in info.value.message and info.value.hint


def test_layers_are_numbered_0_to_11_as_the_official_code_numbers_them():
    SceneParams(layers=(0, 11), object_layer=0).validate()  # the first and the last block
    with pytest.raises(InputError, match="0 to 11"):
        SceneParams(layers=(12,)).validate()


def test_the_paper_grid_needs_seven_levels():
    with pytest.raises(InputError, match="levels"):
        SceneRequest(b"x", SceneParams(levels=5), paper_grid=True).validate()
    assert SceneRequest(b"x", paper_grid=True).validate().rows == (1, 3, 5, 7)
    assert SceneRequest(b"x", SceneParams(levels=3)).rows == (0, 1, 2, 3)


def test_a_scene_request_survives_the_bridges_json_form():
    params = SceneParams(layers=(3, 7), levels=5, iterations=10, seeds=(0,))
    request = SceneRequest(b"image bytes", params, mask=b"mask bytes", width=2.5, color="#112233", paper_grid=False)
    job, buffers = request_to_json(request)
    assert job["kind"] == "scene" and buffers == [b"image bytes", b"mask bytes"]
    assert request_from_json(job, buffers) == request
    job["params"]["levels"] = "many"
    with pytest.raises(InputError, match="levels"):
        request_from_json(job, buffers)


# --- the networks and their optimiser -------------------------------------------------------------


def test_batched_mlps_are_the_papers_architecture_one_copy_per_seed():
    loc = location_mlp([0, 1000, 0], 512)
    assert [tuple(w.shape[1:]) for w in loc.weights] == [(512, 1000), (1000, 1000), (1000, 512)]
    assert torch.equal(loc.weights[0][0], loc.weights[0][2]), "same seed, same network"
    assert not torch.equal(loc.weights[0][0], loc.weights[0][1])
    # Copy 1 as torch.nn layers: the batched call must compute the same function.
    layers = []
    for w, b in zip(loc.weights, loc.biases):
        linear = torch.nn.Linear(*w.shape[1:])
        linear.weight.data, linear.bias.data = w[1].detach().T.clone(), b[1].detach().clone()
        layers += [linear, torch.nn.SELU()]
    reference = torch.nn.Sequential(*layers[:-1])
    x = torch.rand(3, 512) * 2 - 1
    assert torch.allclose(loc(x[1:2], torch.tensor([1])), reference(x[1:2]), atol=1e-5)

    simp = simplicity_mlp([0, 1000], 64)
    assert [tuple(w.shape[1:]) for w in simp.weights] == [(64, 1000), (1000, 1000), (1000, 64)]
    assert all(torch.all(b == 0.01) for b in simp.biases)
    bound = math.sqrt(6 / (64 + 1000))  # Xavier-uniform
    assert simp.weights[0].abs().max() <= bound and simp.weights[0].abs().max() > 0.9 * bound
    p = simp(torch.full((2, 64), 1.5))
    assert p.shape == (2, 64) and bool(((p > 0) & (p < 1)).all())


def test_batched_adam_matches_torch_adam_row_by_row_and_leaves_other_rows_alone():
    torch.manual_seed(0)
    start = torch.randn(3, 4, 5)
    ours = start.clone().requires_grad_()
    adam = BatchedAdam([ours], lr=0.1)
    reference = start[1].clone().requires_grad_()
    torch_adam = torch.optim.Adam([reference], lr=0.1)
    for _ in range(4):
        grad = torch.randn(4, 5)
        adam.step([grad[None]], torch.tensor([1]))
        reference.grad = grad
        torch_adam.step()
    assert torch.allclose(ours[1], reference, atol=1e-6)
    assert torch.equal(ours[0], start[0]) and torch.equal(ours[2], start[2])
    assert adam.steps.tolist() == [0, 4, 0]
    adam.step([torch.ones(3, 4, 5)], torch.arange(3))  # all rows at once: the in-place path
    assert adam.steps.tolist() == [1, 5, 1]
    adam.reset(torch.tensor([1]))
    assert adam.steps.tolist() == [1, 0, 1] and not adam.exp_avg[0][1].any()


def test_gradient_norm_balancing_weighs_terms_inversely_to_their_gradients():
    weights = balance_weights(torch.tensor([[1.0, 2.0], [3.0, 2.0]]))  # two terms, two problems
    assert torch.allclose(weights, torch.tensor([[0.75, 0.5], [0.25, 0.5]]))
    three = balance_weights(torch.tensor([[1.0], [2.0], [5.0]]))  # (sum - g) / ((n - 1) sum)
    assert torch.allclose(three[:, 0], torch.tensor([7 / 16, 6 / 16, 3 / 16]))
    assert torch.allclose(three.sum(0), torch.ones(1))
    assert torch.allclose(balance_weights(torch.zeros(2, 1)), torch.full((2, 1), 0.5))
    assert torch.equal(balance_weights(torch.tensor([[4.0, 0.0]])), torch.ones(1, 2))


def test_presence_is_a_soft_gumbel_sample_and_export_is_deterministic():
    p = torch.tensor([0.01, 0.3, 0.5, 0.55, 0.9, 0.999], requires_grad=True)
    a = gumbel_keep(p, 0.2, torch.Generator().manual_seed(3))
    b = gumbel_keep(p, 0.2, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and bool(((a >= 0) & (a <= 1)).all())
    a.sum().backward()
    assert p.grad is not None and bool(torch.isfinite(p.grad).all())
    # Without noise, presence > 0.7 exactly when p / (1 - p) > (0.7 / 0.3) ** 0.2, i.e. p > 0.5423.
    kept = expected_keep(p.detach(), 0.2) > 0.7
    assert kept.tolist() == [False, False, False, True, True, True]
    # Averaged over many samples, a likely stroke is present more often than an unlikely one.
    many = gumbel_keep(torch.tensor([0.2, 0.8]).expand(4000, 2), 0.2, torch.Generator().manual_seed(0))
    assert many[:, 0].mean() < 0.35 < 0.65 < many[:, 1].mean()


def test_the_ratio_schedule_halves_every_one_over_step_rows():
    ratios = [row_ratio(2.0, 0.5, j) for j in range(1, 9)]
    assert ratios[0] == 2.0
    assert ratios[2] == pytest.approx(1.0) and ratios[4] == pytest.approx(0.5)
    assert all(a > b for a, b in zip(ratios, ratios[1:]))
    per_problem = row_ratio(torch.tensor([1.0, 4.0]), torch.tensor([1.0, 0.5]), 3)
    assert torch.allclose(per_problem, torch.tensor([0.25, 2.0]))
    # Rounded to 3 decimals, as the official scripts pass ratios on.
    assert row_ratio(1 / 3, 0.5, 1) == 0.333 and row_ratio(1 / 3, 0.5, 2) == 0.236
    thirds = row_ratio(torch.tensor([1 / 3, 2 / 3], dtype=torch.float64), torch.tensor([0.5, 0.5]), 2)
    assert torch.equal(thirds, torch.tensor([0.236, 0.471], dtype=torch.float64))


def test_zscore_pick_sums_standardised_terms_per_run():
    # One problem, three evals: the CLIP loss rises while the sparsity falls; eval 1 balances both.
    clip = torch.tensor([1.0, 1.1, 3.0])
    sparse = torch.tensor([0.9, 0.2, 0.1])
    flat = torch.zeros(3)  # a term a background problem does not have: contributes nothing
    best, value = zscore_pick(torch.stack([clip, flat, sparse])[:, :, None])
    z = (clip - clip.mean()) / clip.std(unbiased=False) + (sparse - sparse.mean()) / sparse.std(unbiased=False)
    assert best.tolist() == [int(z.argmin())] == [1]
    assert value.item() == pytest.approx(z.min().item())


def test_a_stroke_is_on_canvas_when_its_ink_reaches_it():
    strokes = torch.tensor(
        [
            [[10, 10], [20, 10], [30, 10], [40, 10]],  # inside
            [[-50, -50], [-40, -50], [-30, -50], [-20, -50]],  # far off
            [[-20, 100], [-5, 100], [5, 100], [20, 100]],  # crosses the left edge
            [[-1.2, 50], [-1.2, 60], [-1.2, 70], [-1.2, 80]],  # just off, but its 1.5 half-width reaches in
        ],
        dtype=torch.float32,
    )[None]
    assert on_canvas(strokes, 1.5).tolist() == [[1.0, 0.0, 1.0, 1.0]]


# --- the optimisation -----------------------------------------------------------------------------


def test_the_matrix_has_every_part_layer_and_row(runtime, field_target):
    run = scene(runtime, field_target)
    assert [(c.part, c.layer) for c in run.columns] == [(OBJECT, 2), (OBJECT, 11), (BACKGROUND, 2), (BACKGROUND, 11)]
    for column in run.columns:
        assert [cell.row for cell in column.cells] == [0, 1, 2]
        for cell in column.cells:
            assert cell.points.shape == (8, 4, 2) and bool(torch.isfinite(cell.points).all())
            assert cell.seed in (0, 1000)
        assert bool(column.cells[0].keep.all()), "the fidelity row keeps every stroke"
        assert column.cells[0].ratio is None and column.cells[1].ratio > column.cells[2].ratio > 0
        assert torch.equal(column.cells[0].importance, column.cells[1].importance)
        # The export's width factor: full in the fidelity row, the presence that decided `keep` below.
        assert column.cells[0].presence is None
        for cell in column.cells[1:]:
            assert cell.presence.shape == (8,) and torch.equal(cell.keep, cell.presence > 0.7)
    # Objects carry the extra layer-4 term; backgrounds do not.
    assert set(run.columns[0].cells[0].losses) == {"layer 2", "layer 4"}
    assert set(run.columns[2].cells[0].losses) == {"layer 2"}
    assert set(run.columns[3].cells[1].losses) == {"layer 11", "sparse"}


def test_the_first_ratio_is_one_over_the_fidelity_sketchs_clip_loss(runtime, field_target):
    run = scene(runtime, field_target, levels=3, layers=(4, 11))
    for column in run.columns:
        losses = column.cells[0].losses
        fidelity = sum(losses.values())  # layer L (+ the unweighted layer 4 for objects)
        if column.part == OBJECT and column.layer == 4:
            assert set(losses) == {"layer 4"}
            fidelity = 2 * losses["layer 4"]  # the official code adds layer 4 to itself there
        r1 = 1 / fidelity
        step = (TINY.steps_object if column.part == OBJECT else TINY.steps_background)[column.layer]
        expected = [round(r1 * 2 ** (-step * (j - 1)), 3) for j in (1, 2, 3)]  # 3 decimals, as the official
        assert [c.ratio for c in column.cells[1:]] == pytest.approx(expected, rel=1e-6, abs=1e-6)


def test_runs_are_deterministic(runtime, field_target):
    a = scene(runtime, field_target, parts=(BACKGROUND,), layers=(8,))
    b = scene(runtime, field_target, parts=(BACKGROUND,), layers=(8,))
    for ca, cb in zip(a.columns[0].cells, b.columns[0].cells):
        assert torch.equal(ca.points, cb.points) and torch.equal(ca.keep, cb.keep)
        assert ca.losses == cb.losses and ca.seed == cb.seed


def test_stroke_counts_do_not_grow_down_the_rows(runtime, field_target):
    # A fast schedule (steps of 1: each row's ratio half the previous one) and a large simplicity
    # learning rate make a few iterations enough for the sparsity to follow the ratios.
    steps = (1.0,) * 12
    run = scene(
        runtime,
        field_target,
        parts=(OBJECT,),
        levels=4,
        seeds=(0,),
        strokes=16,
        iterations=6,
        simplicity_lr=1e-2,
        simplicity_eval_every=5,
        steps_object=steps,
        steps_background=steps,
    )
    for column in run.columns:
        counts = [int(cell.keep.sum()) for cell in column.cells]
        assert all(a >= b for a, b in zip(counts, counts[1:])), counts
        assert counts[-1] < counts[0]


def test_simplicity_rows_warm_start_both_networks_and_their_adam_state(runtime, field_target):
    params = dataclasses.replace(TINY, layers=(8,), iterations=3)
    targets = [SceneTarget(OBJECT, field_target)]
    batch = SceneBatch(runtime, targets, params)
    nets = batch.location_networks()
    clock = quiet_clock(params, targets)
    fidelity = fidelity_row(batch, nets, clock)
    # After the fidelity stage every seed starts from the best seed's MLP_loc.
    assert torch.equal(nets.loc.weights[0][0], nets.loc.weights[0][1])
    batch.add_simplicity_networks(nets)
    assert not torch.equal(nets.simp.weights[0][0], nets.simp.weights[0][1]), "MLP_simp: one per seed"
    cell = simplified_row(batch, nets, clock, 1, fidelity.r1)[0]
    picked = 0 if cell.seed == 0 else 1
    # Both seeds now continue from the picked one: same weights, same Adam moments and step counts
    # (3: the pick is the eval at iteration 3, before its step).
    for tensors in (
        nets.loc.parameters(),
        nets.simp.parameters(),
        nets.loc_adam.state(),
        nets.simp_adam.state(),
    ):
        for t in tensors:
            assert torch.equal(t[0], t[1])
    assert nets.simp_adam.steps.tolist() == [3, 3] and nets.loc_adam.steps.tolist() == [3, 3]
    assert picked in (0, 1)


def test_every_seed_of_a_simplified_row_starts_from_the_previous_rows_sketch(runtime, field_target):
    # The official code feeds every seed of every simplified row the fidelity winner's initial strokes
    # along with the winner's networks: a network run on another seed's input draws something else.
    params = dataclasses.replace(TINY, layers=(2, 8), iterations=3)
    targets = [SceneTarget(OBJECT, field_target), SceneTarget(BACKGROUND, field_target)]
    batch = SceneBatch(runtime, targets, params)
    nets = batch.location_networks()
    clock = quiet_clock(params, targets)
    assert not torch.equal(nets.inputs[0], nets.inputs[1]), "the seeds start from different strokes"
    first_forward = []
    forward = batch.forward

    def recording(nets, active, on_canvas=None):
        terms = forward(nets, active, on_canvas)
        if not first_forward:
            first_forward.append(terms.points.detach().cpu())
        return terms

    batch.forward = recording
    fidelity = fidelity_row(batch, nets, clock)
    previous = fidelity.cells
    batch.add_simplicity_networks(nets)
    for row in (1, 2):
        first_forward.clear()
        cells = simplified_row(batch, nets, clock, row, fidelity.r1)
        for group, cell in enumerate(previous):  # object 2, object 8, background 2, background 8
            for b in batch.group_rows(group).tolist():
                gap = (first_forward[0][b] - cell.points).abs().max()
                assert gap < 1e-3, f"row {row}, column {group}, seed {batch.seed[b]}: {gap:.3g} px away"
        previous = cells


@pytest.mark.parametrize("bank", [8, 0], ids=["bank", "fresh"])
def test_every_view_is_compared_with_the_target_under_the_same_augmentation(runtime, field_target, bank):
    # A "sketch" that is the target itself, augmented exactly as the loss pairs it, scores 0 at every
    # layer and view, from the bank or with augmentations drawn fresh (--aug-bank 0, as the official).
    from engine.methods.augment import augment, random_augmentations
    from engine.runtime import Runtime

    exact = Runtime(runtime.device, runtime.models, precision="fp32", _loaded=runtime._loaded)
    params = dataclasses.replace(TINY, layers=(2, 8), aug_bank=bank)
    parts = [SceneTarget(OBJECT, field_target), SceneTarget(BACKGROUND, 1 - field_target)]
    batch = SceneBatch(exact, parts, params)
    active = torch.arange(batch.B)
    n = params.num_aug
    if bank:
        pick = (torch.arange(len(active))[:, None] + torch.arange(n)) % bank  # distinct within a row
        augmentations = batch.bank[pick.flatten()]
    else:
        pick, augmentations = None, random_augmentations(len(active) * n, 224, torch.Generator().manual_seed(0))
    targets = torch.cat([parts[int(q)].image for q in batch.part])  # (B, 3, H, W)
    views = augment(targets.repeat_interleave(n, 0), augmentations).view(len(active), n, 3, 224, 224)
    images = torch.cat([targets[:, None], views], 1)
    layer, extra = batch.clip_losses(active, images, pick, augmentations)
    assert layer.shape == extra.shape == (batch.B, 1 + n)
    assert float(layer.abs().max()) < 1e-9 and float(extra.abs().max()) < 1e-9
    swapped = torch.cat([targets[:, None], views.roll(1, dims=1)], 1)  # views paired with other augmentations
    layer, _ = batch.clip_losses(active, swapped, pick, augmentations)
    assert bool((layer[:, 1:] > 1e-6).all())


def test_progress_names_the_row_and_gives_an_eta(runtime, field_target):
    events = []
    params = dataclasses.replace(TINY, layers=(8,), levels=1, seeds=(0,))
    optimise_scene(runtime, [SceneTarget(OBJECT, field_target)], params, events.append)
    steps = [e for e in events if e.stage == "optimise"]
    assert len(steps) == 2 * 3  # fidelity + one simplified row, 2 capped iterations + the final eval
    assert steps[0].detail == "fidelity row 0/1 of layers 8 (object, 1 seed)"
    assert steps[-1].detail == "simplicity 1/1 of layers 8 (object, 1 seed)"
    assert all(e.eta_s is not None and e.eta_s >= 0 for e in steps) and steps[-1].eta_s == 0
    assert all(e.loss is not None and math.isfinite(e.loss) for e in steps)


def test_summed_term_gradients_equal_the_weighted_totals_gradient(runtime, field_target):
    # The official code runs one more backward pass for the weighted total; the weights are
    # constants, so the sum of the weighted term gradients we use instead must be the same gradient.
    from engine.runtime import Runtime

    # fp32: bf16 autocast would round the two computations differently.
    exact = Runtime(runtime.device, runtime.models, precision="fp32", _loaded=runtime._loaded)
    params = dataclasses.replace(TINY, layers=(2, 8), seeds=(0,))
    batch = SceneBatch(exact, [SceneTarget(OBJECT, field_target), SceneTarget(BACKGROUND, field_target)], params)
    nets = batch.location_networks()
    batch.add_simplicity_networks(nets)
    terms = batch.forward(nets, torch.arange(batch.B), torch.ones(batch.B, params.strokes))  # every stroke inks
    weights = torch.rand(3, batch.B, generator=torch.Generator().manual_seed(0))
    layer, extra, sparse = terms.layer_loss.mean(1), terms.object_loss.mean(1), terms.sparse
    network = nets.loc.parameters() + nets.simp.parameters()
    summed = weighted_gradient(
        [
            (weights[0], term_gradients(layer.sum(), network)),
            (weights[1], term_gradients(extra.sum(), network)),
            (weights[2], term_gradients(sparse.sum(), network)),
        ],
        None,
        network,
    )
    total = (weights[0] * layer + weights[1] * extra + weights[2] * sparse).sum()
    direct = torch.autograd.grad(total, network)
    for a, b in zip(summed, direct):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6 * float(b.abs().max()))
    assert any(bool(g.abs().sum() > 0) for g in direct[: len(nets.loc.parameters())])


def test_the_optimisation_gives_the_reference_numbers(runtime, field_target):
    """The strokes, presences, losses, ratios and picks of a small object + background matrix (with a
    bank and without) are those recorded in tests/data/reference_strokes.json: a refactor must change
    no number. The record is the CPU's; floating-point reductions may round differently elsewhere,
    hence a tolerance far below what any change to the method (a different draw, step or pick) moves."""
    if runtime.device.type != "cpu":
        pytest.skip("the reference numbers are the CPU's")
    from tests.reference_strokes import reference, scene_numbers

    numbers = scene_numbers(runtime, field_target, 1 - field_target)
    expected = reference()["clipascene"]
    assert numbers.keys() == expected.keys()
    for name, values in expected.items():
        assert numbers[name] == pytest.approx(values, rel=1e-5, abs=1e-6), name
