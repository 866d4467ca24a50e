"""Where and how the engine computes: device, precision, and the CLIP models kept loaded."""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass, field
from typing import Any, Literal, cast, overload

import torch

from bridge.errors import DeviceError, InputError
from bridge.params import DEVICES, MODEL_KINDS, PRECISIONS, RENDERERS
from engine.clip.features import ResNetTower, VitTower
from engine.clip.models import ClipModel, load_clip
from engine.render import diffvg, rasterizer

# fp16's smallest normal is 6e-5: CLIPasso's per-element feature gradients (~1e-9) vanish in it
# unscaled. 2**16 is torch's usual start; a power of two, so unscaling loses no bit.
LOSS_SCALE_START = 2.0**16


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA, then Apple's MPS, then the CPU; asking for an absent device is an error."""
    if name not in DEVICES:
        raise InputError(f"unknown device {name!r}", f"use one of: {', '.join(DEVICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError(
            "CUDA was asked for but no CUDA GPU is usable here",
            "use --device cpu (or auto), or install a CUDA build of torch and a driver",
        )
    if name == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("MPS was asked for but is not available", "use --device cpu (or auto)")
    return torch.device(name)


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype for CLIP, or None for plain fp32.

    'auto' is the official code's arithmetic: fp16 on CUDA, fp32 everywhere else. bf16 is faster on
    CPUs with native bf16 but only on request: its image gradient points elsewhere (cosine ~0.2 with
    fp64's, where the official fp16 keeps ~0.7; docs/method.md#precision, benchmarks/clipasso.py).
    """
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}", f"use one of: {', '.join(PRECISIONS)}")
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


@dataclass
class Runtime:
    """Loaded models on one device. Models load on first use and stay (the engine server keeps one)."""

    device: torch.device
    models: str = "openai"
    weights_dir: str | None = None
    precision: str = "auto"
    renderer: str = "ours"
    channels_last: bool = True  # faster RN101 convolutions; False only to time the official layout
    _loaded: dict[str, torch.nn.Module] = field(default_factory=dict, repr=False)

    @classmethod
    def create(
        cls,
        device: str = "auto",
        models: str = "openai",
        weights_dir: str | None = None,
        precision: str = "auto",
        renderer: str = "ours",
    ) -> Runtime:
        """Validate the options (InputError/DeviceError) and build a runtime; loads nothing yet."""
        if models not in MODEL_KINDS:
            raise InputError(f"unknown models {models!r}", f"use one of: {', '.join(MODEL_KINDS)}")
        if weights_dir is not None and not os.path.isdir(os.path.expanduser(weights_dir)):
            raise InputError(
                f"weights folder {weights_dir} does not exist", "pass the folder that holds RN101.pt and ViT-B-32.pt"
            )
        if renderer not in RENDERERS:
            raise InputError(f"unknown renderer {renderer!r}", f"use one of: {', '.join(RENDERERS)}")
        if renderer == "diffvg" and not diffvg.available():
            raise InputError(
                "the diffvg renderer was asked for, but pydiffvg is not installed in this Python",
                "build diffvg (github.com/BachiLi/diffvg) into this environment, or use "
                "--renderer ours (the default; nothing else needs diffvg)",
            )
        rt = cls(resolve_device(device), models, weights_dir, precision, renderer)
        if renderer == "diffvg" and rt.device.type == "mps":  # diffvg renders on the CPU or with CUDA only
            raise InputError("the diffvg renderer cannot draw on Apple's MPS device", "use --device cpu with it")
        autocast_dtype(rt.device, precision)  # validates the precision now, at the edge
        return rt

    @property
    def amp_dtype(self) -> torch.dtype | None:
        return autocast_dtype(self.device, self.precision)

    @property
    def rasterize(self):
        """The differentiable rasteriser the methods draw with (engine.render.rasterize's interface)."""
        return rasterizer(self.renderer)

    @property
    def loaded(self) -> tuple[str, ...]:
        """The architectures loaded so far."""
        return tuple(self._loaded)

    @overload
    def clip(self, arch: Literal["RN101"]) -> ClipModel[ResNetTower]: ...
    @overload
    def clip(self, arch: Literal["ViT-B-32"]) -> ClipModel[VitTower]: ...
    @overload
    def clip(self, arch: str) -> ClipModel[object]: ...

    def clip(self, arch: str) -> ClipModel[Any]:
        """The CLIP model `arch` (engine.clip.models.RN101 or VIT_B32), loaded on first use; its
        `.visual` typed as the tower the architecture has."""
        if arch not in self._loaded:
            model = load_clip(arch, self.models, weights_dir=self.weights_dir, device=self.device)
            if arch.startswith("RN") and self.channels_last and self.device.type != "mps":
                model = model.to(memory_format=torch.channels_last)
            self._loaded[arch] = model
        return cast(ClipModel[Any], self._loaded[arch])

    def describe(self) -> dict[str, Any]:
        """What this runtime computes with, as the engine's status reply says it."""
        return {
            "device": str(self.device),
            "models": self.models,
            "renderer": self.renderer,
            "loaded": sorted(self.loaded),
        }

    def load(self, *archs: str) -> None:
        """Load these models now (the engine does so before it says it is ready)."""
        for arch in archs:
            self.clip(arch)

    def release_memory(self) -> None:
        """Give cached device memory back after a job, so that other programs can use the GPU."""
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def autocast(self):
        dtype = self.amp_dtype
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    def loss_scaler(self) -> torch.amp.GradScaler:
        """A dynamic loss scale for fp16 autocast, so that no gradient underflows to zero
        (docs/method.md#precision): the loss is multiplied by it before backward and the gradient
        divided by it before the optimiser's step, which is skipped (and the scale halved) when the
        scaled backward overflowed. Disabled (scale 1, nothing changes) for every other precision."""
        enabled = self.amp_dtype == torch.float16
        return torch.amp.GradScaler(self.device.type, init_scale=LOSS_SCALE_START, enabled=enabled)
