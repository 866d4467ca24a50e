"""CLIP's augmentations (docs/method.md#augmentations) against torchvision's own functions: the same
parameters must sample the same source positions and give the same pixels, batched and differentiable."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

from bridge.errors import InputError
from bridge.params import AUG_BANK_AUTO, SceneParams
from engine.methods.augment import CPU_BANK, Augmentations, augment, bank_size, random_augmentations

SIZE = 224


def coordinates(size: int = SIZE) -> torch.Tensor:
    """(1, 3, S, S): an image that encodes its own positions, x and y of each pixel centre (in
    torchvision's convention pixel i spans [i, i + 1)), and a constant 1 (inside the image)."""
    centres = torch.arange(size, dtype=torch.float32) + 0.5
    ys, xs = torch.meshgrid(centres, centres, indexing="ij")
    return torch.stack([xs, ys, torch.ones_like(xs)])[None]


def torchvision_augment(image: torch.Tensor, augmentations: Augmentations, i: int, antialias: bool) -> torch.Tensor:
    """Augmentation i through torchvision: perspective, then resized crop. fill=None pads with plain
    zeros, as the official code's torchvision (0.8) does; newer versions multiply a fill mask in."""
    corners = [[0, 0], [SIZE - 1, 0], [SIZE - 1, SIZE - 1], [0, SIZE - 1]]
    warped = TF.perspective(image, corners, augmentations.corners[i].tolist(), InterpolationMode.BILINEAR, fill=None)
    x, y = augmentations.offsets[i].tolist()
    c = augmentations.crop
    return TF.resized_crop(warped, y, x, c, c, [SIZE, SIZE], InterpolationMode.BILINEAR, antialias=antialias)


@pytest.mark.parametrize("antialias", [True, False], ids=["torchvision-0.17+", "torchvision-0.8"])
def test_same_parameters_sample_the_same_positions_as_torchvision(antialias):
    augmentations = random_augmentations(12, SIZE, torch.Generator().manual_seed(3))
    image = coordinates()
    ours = augment(image.expand(len(augmentations), -1, -1, -1), augmentations)
    worst_position, worst_pixel = 0.0, 0.0
    for i in range(len(augmentations)):
        reference = torchvision_augment(image, augmentations, i, antialias)[0]
        inside = (reference[2] > 1 - 1e-6) & (ours[i, 2] > 1 - 1e-6)  # every tap read the image
        assert inside.float().mean() > 0.5
        worst_position = max(worst_position, float((ours[i, :2] - reference[:2])[:, inside].abs().max()))
        worst_pixel = max(worst_pixel, float((ours[i, 2] - reference[2]).abs().max()))
    assert worst_position < 0.01, f"sampled positions differ by up to {worst_position:.3g} px"
    assert worst_pixel < 1e-4, "black borders differ"


def test_an_augmented_photo_equals_torchvisions(animal_target):
    augmentations = random_augmentations(4, SIZE, torch.Generator().manual_seed(0))
    ours = augment(animal_target.expand(4, -1, -1, -1), augmentations)
    for i in range(4):
        assert torch.allclose(ours[i], torchvision_augment(animal_target, augmentations, i, True)[0], atol=1e-4)


def test_parameters_come_from_torchvisions_ranges_and_the_seed():
    a = random_augmentations(500, SIZE, torch.Generator().manual_seed(7))
    b = random_augmentations(500, SIZE, torch.Generator().manual_seed(7))
    c = random_augmentations(500, SIZE, torch.Generator().manual_seed(8))
    assert torch.equal(a.corners, b.corners) and torch.equal(a.offsets, b.offsets)
    assert not torch.equal(a.corners, c.corners)
    assert a.crop == 200  # round(sqrt(0.8) x 224)
    # Top-left x, y; top-right y; bottom-left x move in [0, 56]; the others in [167, 223].
    lows = torch.tensor([[1, 1], [0, 1], [0, 0], [1, 0]], dtype=torch.bool)
    near, far = a.corners[:, lows], a.corners[:, ~lows]
    assert near.min() == 0 and near.max() == 56 and far.min() == 167 and far.max() == 223
    assert a.offsets.min() == 0 and a.offsets.max() == 24
    assert len(a[torch.tensor([3, 1])]) == 2 and torch.equal(a[5:6].corners, a.corners[5:6])


def test_each_image_gets_its_own_augmentation_and_gradients_flow(animal_target):
    augmentations = random_augmentations(3, SIZE, torch.Generator().manual_seed(1))
    images = torch.cat([animal_target, 1 - animal_target, animal_target.flip(-1)]).requires_grad_()
    batched = augment(images, augmentations)
    for i in range(3):
        alone = augment(images[i : i + 1].detach(), augmentations[i : i + 1])
        assert torch.allclose(batched[i], alone[0], atol=1e-6)
    weights = torch.rand(batched.shape, generator=torch.Generator().manual_seed(2))
    (batched * weights).sum().backward()
    grad = images.grad
    assert grad is not None and bool(torch.isfinite(grad).all()) and all(bool(g.abs().sum() > 0) for g in grad)
    # The gradient is the adjoint of the (linear) warp: <A x, w> = <x, A^T w>.
    assert float((batched.detach() * weights).sum()) == pytest.approx(float((images.detach() * grad).sum()), rel=1e-4)


def test_the_perspective_pulls_black_in_and_keeps_the_middle():
    augmentations = random_augmentations(8, SIZE, torch.Generator().manual_seed(11))
    page = augment(torch.ones(8, 3, SIZE, SIZE), augmentations)
    middle = page[:, :, 80:144, 80:144]
    assert torch.allclose(middle, torch.ones_like(middle)), "the middle reads the image"
    assert float(page.amin()) < 1e-6, "the perspective pulls a black border in"


def test_an_automatic_bank_is_fresh_augmentations_on_a_gpu_and_a_bank_on_a_cpu():
    assert SceneParams().aug_bank == AUG_BANK_AUTO, "scenes choose by device unless told"
    assert bank_size(AUG_BANK_AUTO, torch.device("cpu")) == CPU_BANK == 128
    assert bank_size(AUG_BANK_AUTO, torch.device("cuda")) == 0, "as the official code, where it is affordable"
    assert bank_size(AUG_BANK_AUTO, torch.device("mps")) == 0
    assert [bank_size(n, torch.device("cuda")) for n in (0, 4, 128)] == [0, 4, 128], "an explicit bank is kept"
    with pytest.raises(InputError):
        SceneParams(aug_bank=-2).validate()
