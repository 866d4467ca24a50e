"""Random CLIP weights that behave numerically like trained ones, for timing and precision figures.

open_clip initialises a ResNet for training: every residual branch ends in a batch norm of scale 0
(so each block starts as the identity) and every batch norm keeps the statistics mean 0, variance 1
whatever its input is. Such a network's activations and gradients are nothing like a trained RN101's,
so a precision measured on it says little: with them CLIPasso's fp16 image gradient underflows
entirely. `calibrate_resnet` gives every batch norm random scales and shifts (the residual branches'
last ones smaller, as trained ResNets have them, so the residual stream stays O(1) through all 33
blocks) and the statistics of its input on photo-like images and line sketches, measured in one
forward pass, so that activations are O(1) in every block, as in a trained network.
"""

from __future__ import annotations

import math

import torch

SIDE = 224
BRANCH_SCALE = (0.1, 0.4)  # range of the last batch norm's scale in each residual branch
SCALE = (0.5, 1.5)  # range of every other batch norm's scale
SHIFT_STD = 0.1  # standard deviation of every batch norm's shift


def calibration_images(count: int, generator: torch.Generator) -> torch.Tensor:
    """(count, 3, 224, 224) in [0, 1]: half photo-like images (colour noise with a natural image's
    1/f amplitude spectrum), half black line sketches on white, as CLIPasso shows CLIP both."""
    photos = count // 2
    return torch.cat([_photos(photos, generator), _sketches(count - photos, generator)])


def _photos(count: int, generator: torch.Generator) -> torch.Tensor:
    fy = torch.fft.fftfreq(SIDE)[:, None]
    fx = torch.fft.rfftfreq(SIDE)[None, :]
    amplitude = 1 / (fx.square() + fy.square()).sqrt().clamp(min=1 / SIDE)  # 1/f
    phase = torch.rand(count, 3, SIDE, SIDE // 2 + 1, generator=generator) * 2 * math.pi
    images = torch.fft.irfftn(amplitude * torch.polar(torch.ones_like(phase), phase), s=(SIDE, SIDE), dim=(-2, -1))
    images = images + 0.5 * images.mean(1, keepdim=True)  # channels correlate, as in photos
    lo, hi = images.amin((1, 2, 3), keepdim=True), images.amax((1, 2, 3), keepdim=True)
    return (images - lo) / (hi - lo)


def _sketches(count: int, generator: torch.Generator, strokes: int = 16, pieces: int = 8) -> torch.Tensor:
    """Random walks of `pieces` segments, 1.5 px half-width, black on white."""
    steps = torch.randn(count, strokes, pieces, 2, generator=generator) * 12
    starts = torch.rand(count, strokes, 1, 2, generator=generator) * SIDE
    walks = torch.cat([starts, starts + steps.cumsum(2)], 2)  # (count, strokes, pieces + 1, 2) px
    centres = torch.stack(torch.meshgrid(torch.arange(SIDE), torch.arange(SIDE), indexing="xy"), -1) + 0.5
    p = centres.view(1, -1, 2)  # (1, pixels, 2)
    images = []
    for walk in walks:  # one sketch at a time: (segments, pixels) distances
        a, b = walk[:, :-1].flatten(0, 1)[:, None], walk[:, 1:].flatten(0, 1)[:, None]  # (segments, 1, 2)
        t = ((p - a) * (b - a)).sum(-1) / (b - a).square().sum(-1).clamp(min=1e-6)
        distance = (p - (a + t.clamp(0, 1)[..., None] * (b - a))).norm(dim=-1).amin(0)  # (pixels,)
        images.append(1 - (2.0 - distance).clamp(0, 1))  # 1.5 px half-width, a 1 px ramp
    return torch.stack(images).view(count, 1, SIDE, SIDE).expand(-1, 3, -1, -1).contiguous()


@torch.no_grad()
def calibrate_resnet(visual: torch.nn.Module, images: torch.Tensor, generator: torch.Generator) -> None:
    """Randomise the batch norms of open_clip's ModifiedResNet `visual` and set their statistics to
    those of CLIP-normalised `images` (B, 3, 224, 224), all in one forward pass (train-mode batch norm
    normalises by the batch's statistics, so every layer sees what it will see once calibrated)."""
    norms = [(name, m) for name, m in visual.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for name, norm in norms:
        lo, hi = BRANCH_SCALE if name.endswith("bn3") else SCALE
        norm.weight.copy_(torch.empty_like(norm.weight).uniform_(lo, hi, generator=generator))
        norm.bias.copy_(torch.randn(norm.bias.shape, generator=generator) * SHIFT_STD)
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average: one batch sets the statistics exactly
        norm.train()
    try:
        visual(images.to(next(visual.parameters()).dtype))
    finally:
        for _, norm in norms:
            norm.momentum = 0.1
            norm.eval()
