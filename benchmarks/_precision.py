"""How faithful each CLIP arithmetic keeps a loss's gradient, and the official code's arithmetic.

The losses compare feature maps whose differences are small next to the features themselves, so a
precision can get the loss value right to a fraction of a percent and still round the gradient
(what the optimiser follows) into another direction. `gradient_parity` measures both on the same
inputs against an fp64 run of the same models (docs/method.md#precision).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable

import torch
import torch.nn.functional as F

from engine.clip.features import normalize, vit_block_outputs, widen
from engine.clip.models import VIT_B32
from engine.methods.augment import Augmentations, augment
from engine.methods.clipasso import clipasso_loss, features
from engine.runtime import Runtime

PRECISIONS = ("fp32", "fp16", "bf16")


def official_precision(device: torch.device | str) -> str:
    """The official code's CLIP arithmetic on `device`: fp16 on CUDA (`clip.load` converts the
    weights), fp32 elsewhere. An "official-shaped" reference runs at this precision."""
    return "fp16" if torch.device(device).type == "cuda" else "fp32"


def official_runtime(device: torch.device | str, models: str = "random") -> Runtime:
    """The "official-shaped" reference of the speed benchmarks: real-size random CLIP weights (or
    `models`, e.g. tiny-random for a smoke run), the official code's arithmetic on `device`, plain
    NCHW layout (models load on first use)."""
    return Runtime(torch.device(device), models, precision=official_precision(device), channels_last=False)


def at_precision(runtime: Runtime, precision: str) -> Runtime:
    """The runtime's loaded models under another precision; "fp64" runs double copies of them (on
    the CPU where the device has no fp64, Apple's MPS)."""
    if precision == "fp64":
        device = torch.device("cpu") if runtime.device.type == "mps" else runtime.device
        models = {arch: copy.deepcopy(model).to(device, torch.float64) for arch, model in runtime._loaded.items()}
        return dataclasses.replace(runtime, device=device, precision="fp32", _loaded=models)
    return dataclasses.replace(runtime, precision=precision)


def gradient_parity(
    loss: Callable[[Runtime, torch.Tensor], torch.Tensor],
    runtime: Runtime,
    sketch: torch.Tensor,
    precisions: tuple[str, ...] = PRECISIONS,
) -> dict[str, tuple[float, float]]:
    """{precision: (loss value, cosine of its image gradient with fp64's)} for `loss(runtime, image)`
    of the same sketch image (1, 3, H, W) in [0, 1]; the loss must build everything else (targets,
    augmentations) in the image's dtype, from fixed parameters."""
    reference_loss, reference = _image_gradient(loss, at_precision(runtime, "fp64"), sketch.double())
    out = {"fp64": (reference_loss, 1.0)}
    for precision in precisions:
        value, gradient = _image_gradient(loss, at_precision(runtime, precision), sketch.float())
        out[precision] = (value, float(F.cosine_similarity(gradient.cpu().double(), reference.cpu(), dim=0)))
    return out


def _image_gradient(loss, runtime: Runtime, sketch: torch.Tensor) -> tuple[float, torch.Tensor]:
    """The loss and its image gradient as the optimisation gets it: through the runtime's loss scale
    (fp16: multiplied before backward, divided after; halved and run again where the scaled backward
    overflowed, as the optimisation's step would be skipped and retried)."""
    scaler = runtime.loss_scaler()
    while True:
        image = sketch.detach().to(runtime.device, copy=True).requires_grad_()
        value = loss(runtime, image)
        (gradient,) = torch.autograd.grad(scaler.scale(value), image)
        gradient = gradient / scaler.get_scale()
        if bool(gradient.isfinite().all()) or scaler.get_scale() < 1:
            return float(value.detach()), gradient.flatten()
        scaler.update(scaler.get_scale() / 2)


def unscaled_fp16_share(loss, runtime: Runtime, sketch: torch.Tensor) -> float:
    """The share of the image gradient's elements that fp16 without a loss scale keeps non-zero (the
    rest underflowed)."""
    image = sketch.detach().to(runtime.device, torch.float32, copy=True).requires_grad_()
    (gradient,) = torch.autograd.grad(loss(at_precision(runtime, "fp16"), image), image)
    return float((gradient != 0).float().mean())


def _views(image: torch.Tensor, augmentations: Augmentations | None) -> torch.Tensor:
    """(1 + n, 3, H, W): the image and its n augmentations."""
    if augmentations is None:
        return image
    return torch.cat([image, augment(image.expand(len(augmentations), -1, -1, -1), augmentations)])


def clipasso_image_loss(target: torch.Tensor, augmentations: Augmentations | None):
    """CLIPasso's loss (RN101) of a sketch image against `target`, over the clean pair and the given
    augmentations, as `gradient_parity` takes it."""

    def loss(runtime: Runtime, sketch: torch.Tensor) -> torch.Tensor:
        views = 1 + (len(augmentations) if augmentations is not None else 0)
        sketch_features = features(runtime, _views(sketch, augmentations))
        target_features = features(runtime, _views(target.to(sketch), augmentations))
        return clipasso_loss(sketch_features, target_features, views).mean()

    return loss


def fidelity_image_loss(target: torch.Tensor, augmentations: Augmentations | None, layer: int):
    """CLIPascene's fidelity loss (the L2 of ViT-B/32 layer `layer`) of a sketch image against
    `target`, over the clean pair and the given augmentations."""

    def loss(runtime: Runtime, sketch: torch.Tensor) -> torch.Tensor:
        visual = runtime.clip(VIT_B32).visual
        with runtime.autocast():
            ours = vit_block_outputs(visual, normalize(_views(sketch, augmentations)), [layer])[layer]
            theirs = vit_block_outputs(visual, normalize(_views(target.to(sketch), augmentations)), [layer])
        return (widen(ours) - widen(theirs[layer])).square().mean()

    return loss
