"""CLIP's arithmetic (docs/method.md#precision): the default is the official code's, and keeps the
image gradient the optimiser follows as faithful as fp32, even on CPUs where bf16 would be faster."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from benchmarks._precision import (
    at_precision,
    clipasso_image_loss,
    fidelity_image_loss,
    gradient_parity,
    official_runtime,
    unscaled_fp16_share,
)
from bridge.params import ClipassoParams
from engine.methods.augment import random_augmentations
from engine.methods.clipasso import descend, initial_strokes
from engine.runtime import LOSS_SCALE_START, Runtime, autocast_dtype

pytestmark = pytest.mark.filterwarnings("ignore:.*meaningless:UserWarning")


@pytest.fixture
def cpu_with_bf16(monkeypatch):
    """A CPU that computes bf16 natively (where bf16 would be the fast choice)."""
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True, raising=False)


def test_auto_is_the_official_codes_arithmetic(cpu_with_bf16):
    assert autocast_dtype(torch.device("cpu"), "auto") is None  # fp32, as the official code on a CPU
    assert autocast_dtype(torch.device("cuda"), "auto") is torch.float16  # as the official code on CUDA
    assert autocast_dtype(torch.device("mps"), "auto") is None
    assert autocast_dtype(torch.device("cpu"), "bf16") is torch.bfloat16, "bf16 stays available on request"


def test_the_default_keeps_the_image_gradient_of_fp64(runtime, animal_target, cpu_with_bf16):
    # The fidelity loss at the last ViT layer, with augmentations: bf16 keeps the loss value within a
    # few per mille but turns its gradient (cosine ~0.75 here, ~0.2 with the real models).
    augmentations = random_augmentations(4, 224, torch.Generator().manual_seed(0))
    sketch = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(1)).round()  # black and white
    loss = fidelity_image_loss(animal_target, augmentations, 11)
    parity = gradient_parity(loss, at_precision(runtime, "auto"), sketch, precisions=("auto", "bf16"))
    assert parity["auto"][1] > 0.999
    assert parity["auto"][0] == pytest.approx(parity["fp64"][0], rel=1e-5)
    assert parity["bf16"][0] == pytest.approx(parity["fp64"][0], rel=0.02), "bf16's loss alone looks fine"


def test_the_benchmarks_reference_runs_clip_as_the_official_code_does():
    # No GPU here: the CUDA path is checked through the runtime it builds, without touching CUDA.
    on_cuda, on_cpu = official_runtime("cuda"), official_runtime("cpu")
    assert on_cuda.amp_dtype is torch.float16 and on_cpu.amp_dtype is None
    assert not on_cuda.channels_last and on_cuda.loaded == ()


def test_fp16_keeps_a_gradient_through_its_loss_scale(runtime, animal_target):
    """fp16 alone rounds CLIPasso's per-pixel gradients to zero (the tiny models' all but 0.2 %, the
    uncalibrated real-size ones' all); scaled, it keeps the gradient of fp64 (docs/method.md#precision)."""
    sketch = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(1)).round()  # black and white
    loss = clipasso_image_loss(animal_target, None)
    assert unscaled_fp16_share(loss, runtime, sketch) < 0.01, "fp16 underflows without a loss scale"
    parity = gradient_parity(loss, runtime, sketch, precisions=("fp16",))
    assert parity["fp16"][1] > 0.999


def test_the_loss_scale_runs_only_where_fp16_runs():
    cpu = torch.device("cpu")
    assert Runtime(cpu, precision="fp16").loss_scaler().get_scale() == LOSS_SCALE_START
    for precision in ("auto", "fp32", "bf16"):
        assert Runtime(cpu, precision=precision).loss_scaler().get_scale() == 1.0, "nothing changes"


def test_an_fp16_optimisation_moves_its_strokes(runtime, animal_target):
    """With fp16 autocast the strokes get a gradient and move, under the loss scale the run reports."""
    fp16 = at_precision(runtime, "fp16")
    params = ClipassoParams(strokes=(6,), seeds=(0,), iterations=3, aug_bank=4, min_delta=0.0)
    target = animal_target.to(runtime.device)
    start = initial_strokes(fp16, target, params)
    run = descend(fp16, target, start, params, params.half_width)
    assert 1.0 < run.loss_scale <= LOSS_SCALE_START
    moved = descend(fp16, target, start, dataclasses.replace(params, iterations=2, eval_every=1), params.half_width)
    assert not torch.equal(moved.points, start), "the first step moved the strokes"
