"""Automatic salient-object mask (U2-Net, docs/method.md#input-and-masking) through the optional `rembg` package.

rembg runs U2-Net on ONNX Runtime, so the base install needs no second deep-learning stack. Its
pre-processing differs slightly from the official CLIPasso code (a 320 x 320 resize with ImageNet
normalisation instead of short side -> 320 with CLIP normalisation); the rest matches: first output,
min-max normalised, resized back to the photo, thresholded at 0.5.
"""

from __future__ import annotations

import threading

import numpy as np
from PIL import Image

from bridge.errors import InputError, WeightsMissing

MODEL = "u2net"

# One ONNX session per model name, kept for the life of the process: creating it loads 176 MB of
# weights, which a server should do once, not per request.
_SESSIONS: dict[str, object] = {}
_SESSIONS_LOCK = threading.Lock()


def auto_mask(image: Image.Image) -> np.ndarray:
    """bool (H, W) mask of the photo's salient object: True on the object."""
    try:
        import rembg  # optional: the 'mask' extra
    except ImportError as e:
        raise InputError(
            "automatic masking needs the optional 'mask' extra",
            hint="pip install 'sketch-abstraction[mask]' (downloads U2-Net once, 176 MB), "
            "or pass --mask FILE / --mask none",
        ) from e
    out = rembg.remove(image, session=_session(rembg), only_mask=True)
    saliency = np.asarray(out, dtype=np.float32)  # (H, W), 0..255
    lo, hi = float(saliency.min()), float(saliency.max())
    if hi <= lo:  # a flat map cannot be normalised: U2-Net saw no object
        raise InputError(
            "automatic masking found no salient object in the image",
            hint="pass --mask FILE with the object in white, or --mask none to sketch the whole image",
        )
    return (saliency - lo) / (hi - lo) >= 0.5


def _session(rembg) -> object:
    """The cached rembg session; the first call loads (and, once per machine, downloads) U2-Net."""
    with _SESSIONS_LOCK:
        if MODEL not in _SESSIONS:
            try:
                _SESSIONS[MODEL] = rembg.new_session(MODEL)
            except OSError as e:  # download failed (network errors are OSErrors) or unreadable file
                raise WeightsMissing(
                    f"the U2-Net mask model is not cached and could not be downloaded ({e})",
                    hint="connect to the internet once (176 MB, stored in ~/.u2net), or pass --mask FILE / --mask none",
                ) from e
        return _SESSIONS[MODEL]
