"""Every weight file a scene job needs, checked before any work, so that one message names them all.

A real-weights scene needs CLIP's ViT-B-32.pt, U2-Net's u2net.onnx (with `--mask auto`) and LaMa's
big-lama.pt (when there is a background to fill with LaMa). Each is found or downloaded as usual;
those that cannot be had are named together with the one folder to copy them to (exit code 3),
instead of failing on the first, then the second after the user fixed the first.
"""

from __future__ import annotations

from bridge.errors import WeightsMissing
from bridge.params import MASK_AUTO, MASK_NONE, SceneRequest
from engine.clip.models import CHECKPOINTS, VIT_B32, find_checkpoint
from engine.io.automask import U2NET
from engine.io.weights import WeightsFile, find_weights, missing
from engine.runtime import Runtime
from engine.scene.inpaint import LAMA


def require_scene_weights(runtime: Runtime, request: SceneRequest) -> None:
    """Raise one WeightsMissing naming every real weight file `request` needs and cannot have."""
    if runtime.models != "openai":
        return
    lacking, reasons = [], []
    try:
        find_checkpoint(VIT_B32, runtime.weights_dir)
    except WeightsMissing as err:
        clip = CHECKPOINTS[VIT_B32]
        lacking.append(f"{clip.filename} ({clip.size})")
        reasons.append(err.message.removeprefix("CLIP weights not available: "))
    needed: list[WeightsFile] = []
    if isinstance(request.mask, str) and request.mask == MASK_AUTO:
        needed.append(U2NET)
    if not (isinstance(request.mask, str) and request.mask == MASK_NONE) and request.inpaint == "lama":
        needed.append(LAMA)
    for file in needed:
        try:
            find_weights(file, runtime.weights_dir)
        except WeightsMissing as err:
            lacking.append(file.named)
            reasons.append(err.message.removeprefix("model weights not available: "))
    if lacking:
        raise missing(lacking, "; ".join(reasons), runtime.weights_dir)
