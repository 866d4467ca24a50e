"""CLIP's augmentations (docs/method.md#augmentations) as homographies, so a sketch and its target get identical ones.

The reference applies RandomPerspective(0.5, fill black) then RandomResizedCrop(scale 0.8, ratio 1)
to [sketch, target] together. Both are projective maps, so we draw their parameters as torchvision
does, compose them into one 3 x 3 matrix per augmentation and warp once (kornia). One bilinear
resampling instead of two is the only difference: slightly less blur, same geometry.

Because an augmentation is just a matrix, the target's augmented CLIP features can be computed once
for a bank of matrices and reused: each iteration draws its augmentations from the bank.
"""

from __future__ import annotations

import torch
from kornia.geometry.transform import get_perspective_transform, warp_perspective

DISTORTION = 0.5
CROP_SCALE = 0.8


def _randint(lo: int, hi: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """n integers in [lo, hi) as torch.randint, vectorised."""
    return torch.randint(lo, hi, (n,), generator=generator)


def random_homographies(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """(n, 3, 3) matrices mapping input pixels to augmented pixels for size x size images."""
    w = h = size
    dx, dy = int(DISTORTION * (w // 2)), int(DISTORTION * (h // 2))
    r = lambda lo, hi: _randint(lo, hi, n, generator).float()  # noqa: E731
    corners = torch.tensor([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=torch.float32)
    moved = torch.stack(
        [
            torch.stack([r(0, dx + 1), r(0, dy + 1)], -1),
            torch.stack([r(w - dx - 1, w), r(0, dy + 1)], -1),
            torch.stack([r(w - dx - 1, w), r(h - dy - 1, h)], -1),
            torch.stack([r(0, dx + 1), r(h - dy - 1, h)], -1),
        ],
        dim=1,
    )  # (n, 4, 2)
    perspective = get_perspective_transform(corners.expand(n, 4, 2), moved)

    crop = round((CROP_SCALE * w * h) ** 0.5)  # ratio 1: a square of 80% of the area
    x0, y0 = r(0, w - crop + 1), r(0, h - crop + 1)
    s = size / crop
    resize = torch.zeros(n, 3, 3)
    resize[:, 0, 0] = resize[:, 1, 1] = s
    resize[:, 0, 2] = (0.5 - x0) * s - 0.5  # pixel-centre aligned, as a bilinear resize
    resize[:, 1, 2] = (0.5 - y0) * s - 0.5
    resize[:, 2, 2] = 1.0
    return resize @ perspective


def augment(images: torch.Tensor, homographies: torch.Tensor) -> torch.Tensor:
    """Warp images (B, C, H, W) by homographies (B, 3, 3); outside the source is black (0)."""
    return warp_perspective(
        images, homographies.to(images), images.shape[-2:], mode="bilinear", padding_mode="zeros", align_corners=True
    )
