"""What the methods read out of CLIP's image towers. Inputs are CLIP-normalised (B, 3, 224, 224)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

# OpenAI CLIP's input normalisation.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def widen(features: torch.Tensor) -> torch.Tensor:
    """Features as fp32 at least (autocast leaves them in fp16 or bf16): losses take small differences
    of them. fp64 stays fp64, so a double-precision reference run keeps its precision."""
    return features if features.dtype == torch.float64 else features.float()


def normalize(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> CLIP's input space."""
    mean = images.new_tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(CLIP_STD).view(1, 3, 1, 1)
    return (images - mean) / std


class ResNetTower(Protocol):
    """open_clip's ModifiedResNet (RN101's image tower): the modules `resnet_features` runs."""

    conv1: nn.Conv2d
    layer1: nn.Module
    layer2: nn.Module
    layer3: nn.Module
    layer4: nn.Module
    attnpool: nn.Module

    def stem(self, x: torch.Tensor) -> torch.Tensor: ...


class VitBlock(Protocol):
    """One residual attention block of open_clip's VisionTransformer."""

    attn: nn.MultiheadAttention
    ln_1: nn.Module
    ln_2: nn.Module
    mlp: nn.Module
    ls_1: nn.Module  # LayerScale, or Identity where the model has none (CLIP's)
    ls_2: nn.Module


class VitBlocks(Protocol):
    resblocks: Sequence[VitBlock]


class VitTower(Protocol):
    """open_clip's VisionTransformer (ViT-B/32's image tower): what `patch_tokens` and the blocks read."""

    conv1: nn.Conv2d
    class_embedding: torch.Tensor  # (D,)
    positional_embedding: torch.Tensor  # (1 + patches, D)
    ln_pre: nn.Module
    transformer: VitBlocks


@dataclass
class ResNetFeatures:
    """CLIPasso's loss inputs from the RN101 image tower."""

    layer2: torch.Tensor  # (B, 512, 28, 28), the paper's "layer 3"
    layer3: torch.Tensor  # (B, 1024, 14, 14), the paper's "layer 4"
    embedding: torch.Tensor  # (B, 512) attention-pool output


def resnet_features(visual: ResNetTower, x: torch.Tensor) -> ResNetFeatures:
    """Run open_clip's ModifiedResNet, keeping the intermediate activations the loss compares."""
    x = visual.stem(x.to(visual.conv1.weight.dtype))
    x = visual.layer1(x)
    layer2 = visual.layer2(x)
    layer3 = visual.layer3(layer2)
    embedding = visual.attnpool(visual.layer4(layer3))
    return ResNetFeatures(layer2, layer3, embedding)


def self_attention(attn: torch.nn.MultiheadAttention, x: torch.Tensor, need_weights: bool):
    """`attn(x, x, x)` for tokens x (B, L, D): (out (B, L, D), head-averaged weights (B, L, L) or None).

    The same arithmetic as calling the module, but the tokens enter as a contiguous (L, B, D) copy.
    A batch-first module transposes them internally into a strided view, and on CPU in bf16 every
    matmul on that view is slow: a ViT-B/32 forward + backward runs 3.3x faster this way, bit for bit
    the same (benchmarks/README.md, "ViT attention layout").
    """
    tokens = x.transpose(0, 1).contiguous()  # (L, B, D)
    out, weights = F.multi_head_attention_forward(
        tokens,
        tokens,
        tokens,
        attn.embed_dim,
        attn.num_heads,
        attn.in_proj_weight,
        attn.in_proj_bias,
        None,
        None,
        False,
        attn.dropout,
        attn.out_proj.weight,
        attn.out_proj.bias,
        training=attn.training,
        need_weights=need_weights,
        average_attn_weights=True,
    )
    return out.transpose(0, 1), weights


def patch_tokens(visual: VitTower, x: torch.Tensor) -> torch.Tensor:
    """The ViT's input tokens (B, 1 + patches, D) for images x (B, 3, H, W): the class token, then the
    patches in row-major order, position-embedded and normalised (ln_pre), as CLIP's forward makes them.
    Written out from the modules every open_clip version has (its own helper is private and recent)."""
    patches = visual.conv1(x.to(visual.conv1.weight.dtype)).flatten(2).transpose(1, 2)  # (B, patches, D)
    cls = visual.class_embedding.to(patches.dtype).expand(len(patches), 1, -1)  # (B, 1, D)
    tokens = torch.cat([cls, patches], dim=1) + visual.positional_embedding.to(patches.dtype)
    return visual.ln_pre(tokens)


def _blocks(visual: VitTower, x: torch.Tensor, need_attention: bool):
    """Yield (tokens (B, L, D), head-averaged attention (B, L, L) or None) after each ViT block."""
    x = patch_tokens(visual, x)  # (B, L, D), L = 1 + patches
    for block in visual.transformer.resblocks:
        out, attention = self_attention(block.attn, block.ln_1(x), need_attention)
        x = x + block.ls_1(out)
        x = x + block.ls_2(block.mlp(block.ln_2(x)))
        yield x, attention


@torch.no_grad()
def attention_saliency(visual: VitTower, x: torch.Tensor) -> torch.Tensor:
    """ViT-B/32 saliency as CLIPasso initialises strokes with it (docs/method.md#stroke-initialisation).

    CLS-to-patch attention, averaged over heads and all blocks, as a (B, H, W) map: the patch grid
    upsampled bicubically to the input size and min-max normalised per image.
    """
    maps = [attention[:, 0, 1:] for _, attention in _blocks(visual, x, need_attention=True)]
    cls = torch.stack(maps).float().mean(0)  # (B, patches)
    side = int(cls.shape[-1] ** 0.5)
    grid = cls.view(-1, 1, side, side)  # patches are row-major
    up = F.interpolate(grid, size=x.shape[-2:], mode="bicubic", align_corners=False)[:, 0]
    lo = up.amin(dim=(1, 2), keepdim=True)
    hi = up.amax(dim=(1, 2), keepdim=True)
    return (up - lo) / (hi - lo).clamp(min=1e-12)


def vit_block_outputs(visual: VitTower, x: torch.Tensor, layers: list[int]) -> dict[int, torch.Tensor]:
    """Tokens (B, 50, width), CLS included, after the given layers: layer l is the output of
    `visual.transformer.resblocks[l]`, counted from 0 as the official code does, so 11 is the last
    block of ViT-B/32 (docs/method.md#clip-models)."""
    wanted, out = set(layers), {}
    for index, (tokens, _) in enumerate(_blocks(visual, x, need_attention=False)):
        if index in wanted:
            out[index] = tokens
            if len(out) == len(wanted):
                break
    return out
