"""Automatic salient-object mask (U2-Net, docs/method.md#input-and-masking and #scene-split).

U2-Net runs on ONNX Runtime from the published `u2net.onnx` (176 MB; rembg's release of the official
u2net.pth weights), found, cached and downloaded as CLIP's weights (engine/io/weights.py).
Why ONNX Runtime and not our own torch U2-Net: the official weights are published only as a
Google-Drive `u2net.pth` (the dead links users of the official code complain about) and as this ONNX
file on a GitHub release; reading the ONNX file's weights into a torch module would need the `onnx`
package and a hand-kept copy of U-2-Net's architecture and layer names. onnxruntime is one wheel for
every platform we support with no pins on torch, numpy or Pillow, so it is a regular dependency;
`rembg` (which pulled numba, pymatting and scikit-image, and re-downloaded files whose checksum it
did not know) is no longer used.
The stand-in for `--models tiny-random` (and `random`) is a tiny network written as an ONNX file
(engine/io/tiny_onnx.py) in a temporary folder and read back through the same `InferenceSession`
code path.

Pre- and post-processing as the official code: the photo resized to 320 x 320, divided by its
maximum, normalised with ImageNet's mean and std; the first output, min-max normalised, thresholded
at 0.5 at 320 x 320, then resized back to the photo (bilinear, thresholded at 0.5). This is the
object's UNDILATED mask; the background's hole is grown from it (engine/scene/split.py).
"""

from __future__ import annotations

import functools
import tempfile
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from bridge.errors import InputError
from engine.io.tiny_onnx import conv_sigmoid_model
from engine.io.weights import WeightsFile, weights_for

U2NET = WeightsFile(
    "u2net.onnx",
    "176 MB",
    "https://github.com/danielgatis/rembg/releases/download/v0.0.0/u2net.onnx",
    "60024c5c889badc19c04ad937298a77b",
)
SIDE = 320  # px: U2-Net's input is SIDE x SIDE
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)

# One ONNX session per file, kept for the life of the process: creating it loads 176 MB of weights,
# which a server should do once, not per request.
_SESSIONS: dict[str, object] = {}
_SESSIONS_LOCK = threading.Lock()


def auto_mask(image: Image.Image, models: str = "openai", weights_dir: str | None = None) -> np.ndarray:
    """bool (H, W) mask of the photo's salient object: True on the object (undilated)."""
    saliency = saliency_map(image, session(models, weights_dir))  # (320, 320) float
    lo, hi = float(saliency.min()), float(saliency.max())
    if hi <= lo:  # a flat map cannot be normalised: U2-Net saw no object
        raise InputError(
            "automatic masking found no salient object in the image",
            hint="pass --mask FILE with the object in white, or --mask none to sketch the whole image",
        )
    small = ((saliency - lo) / (hi - lo) >= 0.5).astype(np.float32)
    full = np.asarray(Image.fromarray(small, mode="F").resize(image.size, Image.Resampling.BILINEAR))
    mask = full >= 0.5
    if not mask.any():
        raise InputError(
            "automatic masking found an object too small to keep at the photo's size",
            hint="pass --mask FILE with the object in white, or --mask none to sketch the whole image",
        )
    return mask


def saliency_map(image: Image.Image, onnx_session) -> np.ndarray:
    """U2-Net's first output (320, 320) for an RGB photo."""
    x = np.asarray(image.convert("RGB").resize((SIDE, SIDE), Image.Resampling.BILINEAR), np.float32)
    x = (x / max(float(x.max()), 1e-6) - MEAN) / STD  # (320, 320, 3)
    feed = {onnx_session.get_inputs()[0].name: x.transpose(2, 0, 1)[None]}  # (1, 3, 320, 320)
    return np.asarray(onnx_session.run(None, feed)[0], np.float32)[0, 0]


def session(models: str = "openai", weights_dir: str | None = None):
    """The ONNX Runtime session of U2-Net for a model kind ("openai": the published weights;
    "random", "tiny-random": the tiny stand-in, with a warning), created once per process."""
    path = weights_for(U2NET, models, weights_dir, tiny_u2net_file)
    with _SESSIONS_LOCK:
        if str(path) not in _SESSIONS:
            _SESSIONS[str(path)] = load_u2net(path)
        return _SESSIONS[str(path)]


def load_u2net(path: Path):
    """An ONNX Runtime session for the U2-Net file at `path`; InputError if it is not one."""
    import onnxruntime

    try:
        return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception classes for unreadable files
        raise InputError(
            f"{path} is not a readable U2-Net ONNX file ({str(err).strip().splitlines()[0]})",
            f"download {U2NET.filename} again ({U2NET.url})",
        ) from err


@functools.cache
def tiny_u2net_file() -> Path:
    """A tiny random U2-Net stand-in (the input's shape in, one saliency map out) as an ONNX file,
    once per process, in a temporary folder."""
    rng = np.random.default_rng(0)
    model = conv_sigmoid_model(rng.normal(size=(1, 3, 1, 1)), rng.normal(size=(1,)), SIDE)
    path = Path(tempfile.mkdtemp(prefix="sketchabs-tiny-")) / U2NET.filename
    path.write_bytes(model)
    return path
