"""CLIP's augmentations (docs/method.md#augmentations), drawn and applied as torchvision does, batched.

The official code augments each [sketch, target] pair with torchvision's
RandomPerspective(0.5, p=1, fill=0) and then RandomResizedCrop(224, scale=(0.8, 0.8), ratio=(1, 1)):
two bilinear resamplings in torchvision's pixel convention (pixel i spans [i, i + 1), sampled at
i + 0.5). We draw the same integer parameters from the same ranges and resample the same way, for a
batch with different parameters per image, differentiably with respect to the images. A single
composed warp, or corners taken as pixel centres, would show CLIP sharper and shifted views.

An augmentation is its parameters (`Augmentations`), so a bank of them can be drawn once, the
target's features computed for it once, and each iteration draws from the bank.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bridge.params import AUG_BANK_AUTO

DISTORTION = 0.5  # RandomPerspective's distortion_scale
CROP_SCALE = 0.8  # RandomResizedCrop's scale (one value: the crop is always 80% of the area)
CPU_BANK = 128  # the bank `--aug-bank auto` uses on a CPU
FEATURE_CHUNK = 32  # images per CLIP pass when computing a target's augmented views


def bank_size(requested: int, device: torch.device) -> int:
    """The augmentation bank a job uses: `requested`, or for AUG_BANK_AUTO none on a GPU (fresh
    augmentations every step, as the official code: benchmarks/aug_bank.py does not show the bank
    equal, and a GPU affords the extra target passes) and CPU_BANK on a CPU, where recomputing the
    target's features every step costs most of an iteration again."""
    if requested != AUG_BANK_AUTO:
        return requested
    return CPU_BANK if device.type == "cpu" else 0


@dataclass(frozen=True)
class Augmentations:
    """n augmentations, each a perspective warp followed by a square crop resized back to full size."""

    corners: torch.Tensor  # (n, 4, 2) long px: where the corners (top-left, top-right, bottom-right,
    # bottom-left) of the image go; torchvision's "endpoints"
    offsets: torch.Tensor  # (n, 2) long px: the crop's top-left corner (x, y) in the warped image
    crop: int  # the crop's side, px

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, index) -> Augmentations:
        return Augmentations(self.corners[index], self.offsets[index], self.crop)


def random_augmentations(n: int, size: int, generator: torch.Generator) -> Augmentations:
    """n augmentations of size x size images, drawn from torchvision's ranges with `generator`."""
    d = int(DISTORTION * (size // 2))  # how far a corner may move inwards, per axis

    def r(lo: int, hi: int) -> torch.Tensor:  # n integers in [lo, hi), as torch.randint
        return torch.randint(lo, hi, (n,), generator=generator)

    near, far = (0, d + 1), (size - d - 1, size)
    corners = torch.stack(
        [
            torch.stack([r(*near), r(*near)], -1),
            torch.stack([r(*far), r(*near)], -1),
            torch.stack([r(*far), r(*far)], -1),
            torch.stack([r(*near), r(*far)], -1),
        ],
        dim=1,
    )
    crop = round((CROP_SCALE * size * size) ** 0.5)  # ratio 1: a square, 200 px at 224
    offsets = torch.stack([r(0, size - crop + 1), r(0, size - crop + 1)], -1)
    return Augmentations(corners, offsets, crop)


def draw_views(
    count: int, num_aug: int, size: int, bank: Augmentations | None, generator: torch.Generator
) -> tuple[Augmentations, torch.Tensor | None]:
    """The augmentations of `count` sketches' num_aug views each, sketch by sketch: drawn from `bank`
    with their bank indices (count, num_aug), or drawn fresh (no indices; the official way)."""
    if bank is not None:
        pick = torch.randint(len(bank), (count, num_aug), generator=generator)
        return bank[pick.flatten()], pick
    return random_augmentations(count * num_aug, size, generator), None


def augmented_views(images: torch.Tensor, augmentations: Augmentations) -> torch.Tensor:
    """(c, 1 + num_aug, C, S, S): each of c images (c, C, S, S) as it is, then through its own num_aug
    augmentations (c x num_aug of them, image by image): the views a loss compares, row by row."""
    c = len(images)
    num_aug = len(augmentations) // c
    augmented = augment(images.repeat_interleave(num_aug, 0), augmentations)
    return torch.cat([images[:, None], augmented.view(c, num_aug, *images.shape[1:])], 1)


def augmented_copies(
    image: torch.Tensor, augmentations: Augmentations, chunk: int = FEATURE_CHUNK
) -> Iterator[torch.Tensor]:
    """One (1, C, S, S) image through every augmentation, `chunk` at a time: (<= chunk, C, S, S) each,
    in the augmentations' order (a target's views, whose features a loss compares sketches with)."""
    for lo in range(0, len(augmentations), chunk):
        part = augmentations[lo : lo + chunk]
        yield augment(image.expand(len(part), -1, -1, -1), part)


def augment(images: torch.Tensor, augmentations: Augmentations) -> torch.Tensor:
    """Image i of (B, C, S, S) augmented by augmentation i: perspective (black where it reads outside
    the image), then the crop resized back to S x S. Differentiable with respect to the images."""
    size = images.shape[-1]
    grid = _perspective_grid(augmentations.corners, size, images.dtype, images.device)
    warped = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return _crop_resize(warped, augmentations.offsets.to(images.device), augmentations.crop)


def _perspective_coefficients(corners: torch.Tensor, size: int) -> torch.Tensor:
    """(n, 8) coefficients (a..h) of the map from output to input pixels,
    (x, y) -> ((a x + b y + c) / (g x + h y + 1), (d x + e y + f) / (g x + h y + 1)), that takes the
    moved corners back to the image's corners: torchvision's system, solved in float64, as float32."""
    n = len(corners)
    start = corners.new_tensor([[0, 0], [size - 1, 0], [size - 1, size - 1], [0, size - 1]]).double()
    end = corners.double()  # (n, 4, 2)
    ex, ey = end[..., 0], end[..., 1]  # (n, 4)
    sx, sy = start[:, 0].expand(n, 4), start[:, 1].expand(n, 4)
    one, zero = torch.ones_like(ex), torch.zeros_like(ex)
    rows_x = torch.stack([ex, ey, one, zero, zero, zero, -sx * ex, -sx * ey], -1)  # (n, 4, 8)
    rows_y = torch.stack([zero, zero, zero, ex, ey, one, -sy * ex, -sy * ey], -1)
    system = torch.stack([rows_x, rows_y], 2).view(n, 8, 8)
    return torch.linalg.solve(system, torch.stack([sx, sy], -1).view(n, 8)).float()


def _perspective_grid(corners: torch.Tensor, size: int, dtype, device) -> torch.Tensor:
    """(n, S, S, 2) `grid_sample` positions (align_corners=False) of every output pixel's centre,
    computed as torchvision's `_perspective_grid`."""
    c = _perspective_coefficients(corners, size).to(device, dtype)  # (n, 8)
    n = len(c)
    theta1 = c[:, :6].view(n, 2, 3)  # numerators
    theta2 = torch.cat([c[:, 6:], torch.ones_like(c[:, :1])], 1)[:, None].expand(n, 2, 3)  # denominator
    centres = torch.arange(size, dtype=dtype, device=device) + 0.5
    ys, xs = torch.meshgrid(centres, centres, indexing="ij")
    base = torch.stack([xs, ys, torch.ones_like(xs)], -1).view(1, size * size, 3)  # (1, S*S, 3) px
    numerator = base @ (theta1.transpose(1, 2) / (0.5 * size))  # (n, S*S, 2): source px / (S / 2)
    denominator = base @ theta2.transpose(1, 2)
    return (numerator / denominator - 1).view(n, size, size, 2)


def _crop_resize(images: torch.Tensor, offsets: torch.Tensor, crop: int) -> torch.Tensor:
    """Crop image i of (B, C, S, S) at offsets[i] (x, y) to crop x crop and resize it back to S x S,
    bilinear, as `torch.nn.functional.interpolate(align_corners=False)` does: separable, two taps
    per output pixel, clamped at the crop's edges."""
    size = images.shape[-1]
    src = ((torch.arange(size, device=images.device, dtype=torch.float32) + 0.5) * (crop / size) - 0.5).clamp(min=0)
    lo = src.floor().long().clamp(max=crop - 1)  # (S,) px within the crop
    hi = (lo + 1).clamp(max=crop - 1)
    weight = (src - lo).to(images.dtype)  # (S,) weight of the upper tap
    y, x = offsets[:, 1:], offsets[:, :1]  # (B, 1) each
    rows = _resample_rows(images, y + lo, y + hi, weight)
    return _resample_rows(rows.transpose(2, 3), x + lo, x + hi, weight).transpose(2, 3).contiguous()


def _resample_rows(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, S, W): output row s of image b lies between rows lo[b, s] and hi[b, s],
    at `weight[s]` (0: lo, 1: hi)."""
    shape = (x.shape[0], x.shape[1], lo.shape[1], x.shape[3])
    a = x.gather(2, lo[:, None, :, None].expand(shape))
    b = x.gather(2, hi[:, None, :, None].expand(shape))
    return a + (b - a) * weight[:, None]
