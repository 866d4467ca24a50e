"""The background's hole filled in: LaMa (big-lama, the official code's choice) or OpenCV's Telea.

LaMa is loaded with torch itself from the TorchScript export of big-lama that lama-cleaner/IOPaint
publish (`big-lama.pt`, 196 MB, found, cached and downloaded as CLIP's weights: engine/io/weights.py).
No inpainting package is installed for it: the ones on PyPI pin torch, numpy or Pillow versions that
fight ours, and the TorchScript archive needs nothing but torch. Its convention (as IOPaint calls
it): image (1, 3, H, W) RGB in [0, 1] and mask (1, 1, H, W) in {0, 1}, H and W multiples of 8
(padded by mirroring at the bottom and right, then cropped), out (1, 3, H, W) RGB in [0, 1].

`--models tiny-random` (and `random`) load a tiny TorchScript module written to a temporary folder
and read back by the same `torch.jit.load` code path, so tests exercise the real loading and calling.

Both methods inpaint at most INPAINT_SIDE px on the long side (the official code resizes photos over
512 px to 512 x 512 first; we keep the aspect) and paste the result back into the full-size photo
inside the hole only, so pixels outside it stay exactly as they were. Telea smears the colours
around the hole inwards, which leaves a ghost of the subject; it is there only when asked for
(`--inpaint telea`), for machines that cannot have LaMa's weights.
"""

from __future__ import annotations

import functools
import tempfile
import threading
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from bridge.errors import InputError
from engine.io.weights import WeightsFile, weights_for
from engine.scene.split import Fill

LAMA = WeightsFile(
    "big-lama.pt",
    "196 MB",
    "https://github.com/Sanster/models/releases/download/add_big_lama/big-lama.pt",
    "e3aa4aaa15225a33ec84f9f4bc47e500",
)
INPAINT_SIDE = 512  # px: the long side both methods inpaint at
PAD_MULTIPLE = 8  # LaMa's downsamplings need sides divisible by 8
TELEA_RADIUS = 5  # px at the inpainting resolution

_MODELS: dict[tuple[str, str], torch.jit.ScriptModule] = {}  # (file, device) -> loaded LaMa, per process
_MODELS_LOCK = threading.Lock()


def inpaint(
    image: Image.Image,
    hole: np.ndarray,
    method: str,
    models: str = "openai",
    weights_dir: str | None = None,
    device: torch.device | str = "cpu",
) -> Image.Image:
    """RGB `image` with `hole` (H, W) bool filled by `method` ("lama" or "telea")."""
    factor = min(1.0, INPAINT_SIDE / max(image.size))
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    small = np.asarray(image.convert("RGB").resize(size, Image.Resampling.BILINEAR))  # (h, w, 3) uint8
    small_hole: np.ndarray = np.asarray(Image.fromarray(hole).resize(size, Image.Resampling.NEAREST)).astype(np.uint8)
    small_hole = cv2.dilate(small_hole, np.ones((3, 3), np.uint8))  # covers the edge pixels the resize blended
    filled: np.ndarray  # (h, w, 3) uint8
    if method == "lama":
        filled = _lama(small, small_hole, lama_model(models, weights_dir, str(device)), torch.device(device))
    elif method == "telea":
        filled = cv2.inpaint(small, small_hole, TELEA_RADIUS, cv2.INPAINT_TELEA)
    else:
        raise InputError(f"unknown inpainting method {method!r}", "use --inpaint lama or --inpaint telea")
    full = Image.fromarray(filled).resize(image.size, Image.Resampling.BICUBIC)
    return Image.composite(full, image.convert("RGB"), Image.fromarray(hole))


_NOTES = {
    "lama": "background inpainted with LaMa (big-lama)",
    "telea": "background inpainted with OpenCV's Telea, as asked (--inpaint telea): expect a smeared ghost of "
    "the subject where it was; LaMa (--inpaint lama) is the official method",
}


def filler(
    method: str, models: str = "openai", weights_dir: str | None = None, device: torch.device | str = "cpu"
) -> Fill:
    """engine.scene.split's `Fill` for `method`: (photo, hole) -> (filled photo, a note for the user)."""
    return lambda image, hole: (inpaint(image, hole, method, models, weights_dir, device), _NOTES[method])


@torch.no_grad()
def _lama(rgb: np.ndarray, hole: np.ndarray, model: torch.jit.ScriptModule, device: torch.device) -> np.ndarray:
    """(h, w, 3) uint8 -> (h, w, 3) uint8 filled by LaMa inside `hole` (h, w) {0, 1}."""
    h, w = hole.shape
    pad = ((0, -h % PAD_MULTIPLE), (0, -w % PAD_MULTIPLE))  # mirrored at the bottom and right, as IOPaint
    rgb, hole = np.pad(rgb, (*pad, (0, 0)), mode="symmetric"), np.pad(hole, pad, mode="symmetric")
    image = torch.from_numpy(rgb).permute(2, 0, 1)[None].float().div(255)  # (1, 3, H, W)
    mask = torch.from_numpy(hole)[None, None].float()  # (1, 1, H, W)
    out = model(image.to(device), mask.to(device))[0, :, :h, :w].float().cpu()  # (3, h, w) in [0, 1]
    return (out.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def lama_model(models: str, weights_dir: str | None, device: str) -> torch.jit.ScriptModule:
    """The LaMa TorchScript module for a model kind ("openai": the published big-lama; "random",
    "tiny-random": the tiny stand-in, with a warning), loaded once per process and device."""
    path = weights_for(LAMA, models, weights_dir, tiny_lama_file)
    with _MODELS_LOCK:
        key = (str(path), device)
        if key not in _MODELS:
            _MODELS[key] = load_lama(path, device)
        return _MODELS[key]


def load_lama(path: Path, device: str) -> torch.jit.ScriptModule:
    """A LaMa TorchScript archive on `device`, in eval mode; InputError if the file is not one."""
    try:
        with warnings.catch_warnings():  # torch deprecates TorchScript, but big-lama is published as one
            warnings.simplefilter("ignore", FutureWarning)
            model = torch.jit.load(str(path), map_location=device)
    except (RuntimeError, ValueError) as err:
        raise InputError(
            f"{path} is not a readable LaMa TorchScript file ({str(err).strip().splitlines()[0]})",
            f"download {LAMA.filename} again ({LAMA.url})",
        ) from err
    return model.eval()


class _TinyLama(torch.nn.Module):
    """The stand-in: big-lama's signature (image, mask) -> image, one small convolution inside."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 3, 3, padding=1)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv(torch.cat([image * (1 - mask), mask], 1)))


@functools.cache
def tiny_lama_file() -> Path:
    """A tiny random LaMa stand-in saved as TorchScript, once per process, in a temporary folder."""
    torch.manual_seed(0)
    path = Path(tempfile.mkdtemp(prefix="sketchabs-tiny-")) / LAMA.filename
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(_TinyLama()).save(str(path))
    return path
