"""Stroke initialisation shared by CLIPasso and CLIPascene: saliency x XDoG edges
(docs/method.md#stroke-initialisation).

Start points are drawn without replacement from a softmax over salient edge pixels; the other
control points follow as a short random walk.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.clip.features import attention_saliency, normalize
from engine.clip.models import VIT_B32
from engine.runtime import Runtime

# XDoG parameters of the reference implementation.
XDOG_SIGMA, XDOG_K, XDOG_GAMMA, XDOG_EPS, XDOG_PHI = 0.8, 10.0, 0.98, -0.1, 200.0
GRAY_WEIGHTS = (0.2125, 0.7154, 0.0721)


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (H, W) as scipy.ndimage.gaussian_filter (the reference's):
    kernel truncated at 4 sigma, borders extended by half-sample symmetric reflection."""
    radius = int(4.0 * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    rows = image[_symmetric_index(image.shape[0], radius, image.device)]  # (H + 2r, W)
    cols = rows[:, _symmetric_index(image.shape[1], radius, image.device)]  # (H + 2r, W + 2r)
    img = F.conv2d(cols[None, None], kernel.view(1, 1, 1, -1))
    return F.conv2d(img, kernel.view(1, 1, -1, 1))[0, 0]


def _symmetric_index(n: int, radius: int, device) -> torch.Tensor:
    """Indices -radius..n+radius-1 folded back as (d c b a | a b c d | d c b a), for any n >= 1."""
    i = torch.arange(-radius, n + radius, device=device) % (2 * n)
    return torch.where(i < n, i, 2 * n - 1 - i)


def otsu_threshold(values: torch.Tensor, bins: int = 256) -> float:
    """Otsu's threshold over a 256-bin histogram of `values` (as skimage's threshold_otsu)."""
    v = values.flatten().to("cpu", torch.float64)  # on the CPU: MPS has no float64
    lo, hi = v.min().item(), v.max().item()
    if hi <= lo:
        return lo
    hist = torch.histc(v, bins=bins, min=lo, max=hi)
    centres = lo + (torch.arange(bins, dtype=torch.float64) + 0.5) * (hi - lo) / bins
    w0 = hist.cumsum(0)
    w1 = hist.flip(0).cumsum(0).flip(0)
    m0 = (hist * centres).cumsum(0) / w0.clamp(min=1e-12)
    m1 = (hist * centres).flip(0).cumsum(0).flip(0) / w1.clamp(min=1e-12)
    between = w0[:-1] * w1[1:] * (m0[:-1] - m1[1:]) ** 2
    return centres[int(between.argmax())].item()


def xdog_ink(image_normalized: torch.Tensor) -> torch.Tensor:
    """Edge pixels (True = ink) of a CLIP-normalised (3, H, W) image by XDoG + Otsu.

    The reference applies XDoG to the CLIP-normalised image rather than to [0, 1] pixels; we follow it.
    """
    gray = torch.einsum("c,chw->hw", image_normalized.new_tensor(GRAY_WEIGHTS), image_normalized.float())
    d = gaussian_blur(gray, XDOG_SIGMA) - XDOG_GAMMA * gaussian_blur(gray, XDOG_SIGMA * XDOG_K)
    value = torch.where(d < XDOG_EPS, torch.ones_like(d), 1.0 + torch.tanh(XDOG_PHI * d))
    value = (value - value.min()) / (value.max() - value.min()).clamp(min=1e-12)
    return value < otsu_threshold(value)


def salient_edges(runtime: Runtime, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The saliency (224, 224) and XDoG edge ink (224, 224) bool of a (1, 3, 224, 224) target in
    [0, 1] on the runtime's device, both on the CPU: what strokes start on."""
    target_n = normalize(target)
    with runtime.autocast():
        saliency = attention_saliency(runtime.clip(VIT_B32).visual, target_n)[0].float().cpu()
    return saliency, xdog_ink(target_n[0].float().cpu())


def target_start_distribution(runtime: Runtime, target: torch.Tensor, temperature: float) -> torch.Tensor:
    """(224, 224) start-point probabilities of a target: its saliency x its edges, as both methods start."""
    saliency, ink = salient_edges(runtime, target)
    return start_distribution(saliency, ink, temperature)


def start_distribution(saliency: torch.Tensor, ink: torch.Tensor, temperature: float = 0.3) -> torch.Tensor:
    """Probability (H, W) of starting a stroke at each pixel: softmax(saliency / T) over salient ink.

    Pixels with zero weight (not ink, or zero saliency) get probability exactly 0.
    """
    s = (saliency - saliency.min()) / (saliency.max() - saliency.min()).clamp(min=1e-12)
    weight = s * ink.to(s.dtype)
    positive = weight > 0
    logits = torch.where(positive, weight / temperature, torch.full_like(weight, -torch.inf))
    return torch.softmax(logits.flatten(), 0).view_as(weight)


def sample_strokes(
    distribution: torch.Tensor, n: int, k: int, generator: torch.Generator, step: float = 0.025
) -> torch.Tensor:
    """n strokes of k control points (n, k, 2) in canvas px.

    p0: pixel centres drawn without replacement from `distribution` (H, W); when it has fewer than n
    nonzero pixels the rest are drawn uniformly from the other pixels. p1..: each the previous point
    plus a uniform offset in [-step, step] x canvas size per axis.
    """
    H, W = distribution.shape
    p = distribution.flatten().to("cpu", torch.float64)  # the generator is a CPU one; MPS has no float64
    available = int((p > 0).sum())
    if available < n:
        p = torch.where(p > 0, p, torch.full_like(p, 1e-12 * max(available, 1)))
    index = torch.multinomial(p, n, replacement=False, generator=generator)
    start = torch.stack([index % W, index // W], dim=-1).float() + 0.5  # (n, 2) x, y
    return random_walk(start, k, step * max(H, W), generator)


def random_walk(start: torch.Tensor, k: int, step_px: float, generator: torch.Generator) -> torch.Tensor:
    """(n, 2) start points -> (n, k, 2): k - 1 uniform steps of up to step_px per axis."""
    steps = (torch.rand(start.shape[0], k - 1, 2, generator=generator) * 2 - 1) * step_px
    return torch.cat([start[:, None], start[:, None] + steps.cumsum(1)], dim=1)
