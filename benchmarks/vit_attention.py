"""ViT attention layout: tokens handed to the attention as the batch-first module receives them
(it transposes them into a strided view) vs as a contiguous (L, B, D) copy (engine.clip.features.
self_attention), measured side by side in one run.

Forward + backward of real-size ViT-B/32 (random weights) up to block 11, as CLIPascene's fidelity
loss reads it, for a batch of sketches; fp32 and the engine's autocast (bf16 on CPUs that have it,
fp16 on CUDA). Also prints the largest difference between the two outputs and input gradients.

Run: python benchmarks/vit_attention.py [--device cuda] [--batch 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import engine  # noqa: F401  first: the engine's process settings (engine/__init__.py) before torch loads

# isort: split
import torch

from benchmarks._machine import describe
from engine.clip import features
from engine.clip.models import VIT_B32
from engine.runtime import Runtime

LAYER = 11


def module_call(attn, x, need_weights):
    """The reference: the batch-first nn.MultiheadAttention called on the tokens as they are."""
    return attn(x, x, x, need_weights=need_weights, average_attn_weights=True)


def step(runtime: Runtime, images: torch.Tensor, attention) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward + backward through the ViT with `attention` in every block; (tokens, input grad)."""
    features_attention, features.self_attention = features.self_attention, attention
    try:
        x = images.clone().requires_grad_()
        with runtime.autocast():
            tokens = features.vit_block_outputs(runtime.clip(VIT_B32).visual, x, [LAYER])[LAYER]
        tokens.float().square().mean().backward()
    finally:
        features.self_attention = features_attention
    return tokens.detach().float(), x.grad


def seconds(runtime, images, attention, repeats: int) -> float:
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        step(runtime, images, attention)
        if runtime.device.type == "cuda":
            torch.cuda.synchronize()
        if i:  # the first run warms up
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=".*random weights.*")
    print(f"machine: {describe(args.device)}")
    images = torch.rand(args.batch, 3, 224, 224, generator=torch.Generator().manual_seed(0)).to(args.device)
    print(f"{'precision':<18}{'module s':>10}{'contiguous s':>14}{'speed-up':>10}{'max |diff|':>12}")
    for precision in ("fp32", "auto"):
        runtime = Runtime.create(args.device, "random", precision=precision)
        (a, ga), (b, gb) = (step(runtime, images, f) for f in (module_call, features.self_attention))
        diff = max((a - b).abs().max().item(), (ga - gb).abs().max().item())
        old = seconds(runtime, images, module_call, args.repeats)
        new = seconds(runtime, images, features.self_attention, args.repeats)
        label = f"{precision} ({runtime.amp_dtype or torch.float32})".replace("torch.", "")
        print(f"{label:<18}{old:>10.3f}{new:>14.3f}{old / new:>9.1f}x{diff:>12.2e}")


if __name__ == "__main__":
    main()
