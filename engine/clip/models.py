"""Building CLIP models: OpenAI weights for real work, random weights for tests and timing.

Every kind goes through `open_clip.create_model` with the architecture's own config, so a test model
exercises the same code as the real one; "tiny-random" only shrinks the widths and depths.
OpenAI's checkpoints are TorchScript archives (as the `clip` package caches them in ~/.cache/clip);
we read their state dict and never execute pickled code.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Generic, TypeVar

import open_clip
import torch

from bridge import connection
from bridge.errors import InputError, WeightsMissing
from bridge.params import MODEL_KINDS
from engine.clip.calibrate import calibrate_resnet, calibration_images
from engine.clip.features import normalize

RN101: Final = "RN101"
VIT_B32: Final = "ViT-B-32"
CALIBRATION_IMAGES = 8  # the batch that sets the random RN101's batch-norm statistics (engine.clip.calibrate)
# Set to skip download attempts (machines without network; the tests set it).
OFFLINE_ENV = "SKETCH_ABSTRACTION_OFFLINE"


Tower = TypeVar("Tower", covariant=True)


class ClipModel(Generic[Tower]):
    """A loaded open_clip CLIP model as the engine uses it: `visual`, its image tower (a
    `ResNetTower` for RN101, a `VitTower` for ViT-B/32: engine.clip.features). open_clip has no
    types of its own; this names what its model is. Only for typing: the object is open_clip's."""

    visual: Tower


@dataclass(frozen=True)
class Checkpoint:
    filename: str  # as OpenAI publishes it and the `clip` package caches it
    size: str


CHECKPOINTS = {RN101: Checkpoint("RN101.pt", "278 MB"), VIT_B32: Checkpoint("ViT-B-32.pt", "338 MB")}

_TINY_TEXT = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
# Same architectures, a fraction of the width: layer names, token counts and feature-map sizes stay,
# so shapes downstream are those of the real models (ViT keeps its 12 blocks for CLIPascene's layers).
_TINY = {
    RN101: {
        "embed_dim": 64,
        "text_cfg": _TINY_TEXT,
        "vision_cfg": {"image_size": 224, "layers": [1, 1, 1, 1], "width": 8, "head_width": 16},
    },
    VIT_B32: {
        "embed_dim": 64,
        "text_cfg": _TINY_TEXT,
        "vision_cfg": {"image_size": 224, "layers": 12, "width": 64, "head_width": 32, "patch_size": 32},
    },
}


def cache_dir() -> Path:
    """Where this package downloads weights to."""
    return connection.weights_dir()


def load_clip(
    arch: str, kind: str = "openai", *, weights_dir: str | os.PathLike | None = None, device: torch.device | str = "cpu"
) -> torch.nn.Module:
    """A frozen CLIP model in eval mode on `device`.

    kind: "openai" (pretrained; raises WeightsMissing when unavailable), "random" (real size,
    random weights, for timing and precision figures; a ResNet's batch norms calibrated so that its
    activations are O(1) as a trained one's, engine.clip.calibrate) or "tiny-random" (small, random,
    for tests). Random kinds warn.
    """
    if kind not in MODEL_KINDS:
        raise InputError(f"unknown model kind {kind!r}", f"use one of: {', '.join(MODEL_KINDS)}")
    if kind == "openai":
        with _quiet_open_clip():
            model = open_clip.create_model(arch, pretrained=None, quick_gelu=True)
        _load_weights(model, find_checkpoint(arch, weights_dir), arch)
    else:
        warnings.warn(f"{arch}: {kind} weights, sketches will be meaningless (tests and timing only)", stacklevel=2)
        torch.manual_seed(0)  # the same random model every time, so runs are reproducible
        overrides = _TINY[arch] if kind == "tiny-random" else {}
        with _quiet_open_clip():
            model = open_clip.create_model(arch, pretrained=None, quick_gelu=True, **overrides)
        if kind == "random" and arch.startswith("RN"):  # real size: numerics like a trained network's
            generator = torch.Generator().manual_seed(0)
            calibrate_resnet(model.visual, normalize(calibration_images(CALIBRATION_IMAGES, generator)), generator)
    model.eval().requires_grad_(False)  # the official code forgets to freeze; results are the same
    return model.to(device)


@contextlib.contextmanager
def _quiet_open_clip():
    """open_clip logs "no pretrained weights loaded" for every model we fill ourselves."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def find_checkpoint(arch: str, weights_dir: str | os.PathLike | None = None) -> Path:
    """The checkpoint file for `arch`: from `weights_dir` if given, else a cache, else downloaded."""
    ckpt = CHECKPOINTS[arch]
    if weights_dir is not None:
        path = Path(weights_dir).expanduser() / ckpt.filename
        if path.is_file():
            return path
        raise _missing(f"{ckpt.filename} is not in {weights_dir}")
    for folder in (cache_dir(), Path.home() / ".cache" / "clip"):
        if (folder / ckpt.filename).is_file():
            return folder / ckpt.filename
    if os.environ.get(OFFLINE_ENV):
        raise _missing(f"{ckpt.filename} is not cached and {OFFLINE_ENV} forbids downloading it")
    return _download(arch)


def _download(arch: str) -> Path:
    url = open_clip.pretrained.get_pretrained_cfg(arch, "openai")["url"]
    try:  # saved under the URL's file name, which is the name find_checkpoint looks for
        return Path(open_clip.pretrained.download_pretrained_from_url(url, cache_dir=str(cache_dir())))
    except Exception as err:  # any network or disk failure means the same thing to the user
        raise _missing(f"downloading {CHECKPOINTS[arch].filename} failed ({err})") from err


def _missing(reason: str) -> WeightsMissing:
    files = ", ".join(f"{c.filename} ({c.size})" for c in CHECKPOINTS.values())
    return WeightsMissing(
        f"CLIP weights not available: {reason}",
        f"needs OpenAI's {files}; with network they download once into {cache_dir()}; offline, copy "
        f"them into that folder or ~/.cache/clip, or pass --weights-dir DIR",
    )


def _load_weights(model: torch.nn.Module, path: Path, arch: str) -> None:
    try:
        state = torch.jit.load(str(path), map_location="cpu").state_dict()
    except RuntimeError:  # not a TorchScript archive: a plain state dict, loaded without pickle code
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise _unreadable(path, arch, (str(err).strip().splitlines() or [type(err).__name__])[0]) from err
    if not isinstance(state, dict):
        raise _unreadable(path, arch, f"it holds a {type(state).__name__}, not a state dict")
    state = {k: v for k, v in state.items() if k not in ("input_resolution", "context_length", "vocab_size")}
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise InputError(
            f"{path} does not hold {arch} weights", f"put OpenAI's {CHECKPOINTS[arch].filename} there"
        ) from err


def _unreadable(path: Path, arch: str, reason: str) -> InputError:
    return InputError(
        f"{path} is not a readable CLIP checkpoint: {reason}", f"download {CHECKPOINTS[arch].filename} again"
    )
