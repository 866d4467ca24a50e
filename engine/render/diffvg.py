"""diffvg (the official code's renderer) behind the interface of `engine.render.rasterize`.

Optional: only for parity checks against the official pipeline (`--renderer diffvg`). pydiffvg is
not on PyPI; it is imported when used. The scene is set up as CLIPasso and CLIPascene set it up
(docs/method.md#sketches-and-rendering): one open path and one shape group per stroke, opaque black
stroke colour, no fill, `stroke_width` = our half-width, 2 x 2 jittered samples per pixel with seed 0,
composited over white.
diffvg renders one scene per call, so a batch is a loop.
"""

from __future__ import annotations

import torch

SAMPLES = 2  # per pixel side: 2 x 2 jittered samples, as the official code renders
SEED = 0


def available() -> bool:
    """Whether pydiffvg and its compiled core import here."""
    try:
        import diffvg  # noqa: F401
        import pydiffvg  # noqa: F401
    except ImportError:
        return False
    return True


def rasterize(
    points: torch.Tensor,
    half_width: float | torch.Tensor = 1.5,
    size: tuple[int, int] = (224, 224),
) -> torch.Tensor:
    """Render black strokes on white with diffvg; same arguments and result as `engine.render.rasterize`.

    points: (B, n, k, 2) Bézier control points (x, y) in pixels; k = 4 cubic, 3 quadratic, 2 line.
    half_width: a float or (B, n) per-stroke half-widths in pixels (diffvg's `stroke_width`).
    Returns (B, 3, H, W) in [0, 1], differentiable w.r.t. points and half_width (diffvg's gradients).
    """
    import pydiffvg

    B, n, k, _ = points.shape
    H, W = size
    pydiffvg.set_device(points.device)  # also switches its GPU use on or off
    points = points.float()
    hw = torch.as_tensor(half_width, dtype=torch.float32, device=points.device).expand(B, n)
    controls = torch.tensor([k - 2], dtype=torch.int32)  # control points between the two ends
    black = torch.tensor([0.0, 0.0, 0.0, 1.0], device=points.device)
    images = []
    for b in range(B):
        if n == 0:
            images.append(torch.ones(3, H, W, device=points.device))
            continue
        shapes = [
            pydiffvg.Path(
                num_control_points=controls, points=points[b, i].contiguous(), is_closed=False, stroke_width=hw[b, i]
            )
            for i in range(n)
        ]
        groups = [
            pydiffvg.ShapeGroup(shape_ids=torch.tensor([i]), fill_color=None, stroke_color=black) for i in range(n)
        ]
        scene = pydiffvg.RenderFunction.serialize_scene(W, H, shapes, groups)
        rgba = pydiffvg.RenderFunction.apply(W, H, SAMPLES, SAMPLES, SEED, None, *scene)  # (H, W, 4)
        alpha = rgba[..., 3:].to(points.device)
        images.append((rgba[..., :3].to(points.device) * alpha + (1.0 - alpha)).permute(2, 0, 1))
    return torch.stack(images)
