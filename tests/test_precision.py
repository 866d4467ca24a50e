"""CLIP's arithmetic (docs/method.md#precision): the default is the official code's, and keeps the
image gradient the optimiser follows as faithful as fp32, even on CPUs where bf16 would be faster."""

from __future__ import annotations

import pytest
import torch

from benchmarks._precision import at_precision, fidelity_image_loss, gradient_parity, official_runtime
from engine.methods.augment import random_augmentations
from engine.runtime import autocast_dtype

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
