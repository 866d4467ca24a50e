"""CLIP models: tiny random stand-ins with the real shapes, frozen weights, our forwards against
open_clip's own, and finding and loading OpenAI checkpoints (never from the network)."""

from __future__ import annotations

import io
import random
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F

from bridge.errors import DeviceError, InputError, WeightsMissing
from engine.clip.features import attention_saliency, normalize, resnet_features, self_attention, vit_block_outputs
from engine.clip.models import (
    OFFLINE_ENV,
    RN101,
    VIT_B32,
    _load_weights,
    cache_dir,
    find_checkpoint,
    load_clip,
)
from engine.runtime import Runtime

# torch 2.10+ deprecates torch.jit (the loader still needs it for OpenAI's TorchScript archives).
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*deprecated:FutureWarning")

NOISE = random.Random(0).randbytes(4096)  # fixed "random" bytes: the same failure every run


def tiny(arch):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return load_clip(arch, "tiny-random")


@pytest.fixture(scope="module")
def images():
    """Two CLIP-normalised random 224 images."""
    return normalize(torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0)))


@pytest.fixture(scope="module")
def rn101():
    return tiny(RN101)


@pytest.fixture(scope="module")
def vit():
    return tiny(VIT_B32)


# --- shapes and freezing --------------------------------------------------------------------------


def test_tiny_rn101_features_have_the_real_spatial_shapes(rn101, images):
    f = resnet_features(rn101.visual, images)
    assert f.layer2.shape[0] == 2 and f.layer2.shape[2:] == (28, 28)
    assert f.layer3.shape[0] == 2 and f.layer3.shape[2:] == (14, 14)
    assert f.embedding.ndim == 2 and f.embedding.shape[0] == 2


def test_tiny_vit_has_twelve_blocks_of_fifty_tokens(vit, images):
    out = vit_block_outputs(vit.visual, images, list(range(12)))
    assert sorted(out) == list(range(12))
    width = out[0].shape[-1]
    assert all(t.shape == (2, 50, width) for t in out.values())
    some = vit_block_outputs(vit.visual, images, [2, 8, 11])
    assert sorted(some) == [2, 8, 11]
    for layer in (2, 8, 11):
        assert torch.equal(some[layer], out[layer])


@pytest.mark.parametrize("arch", [RN101, VIT_B32])
def test_models_are_frozen_and_in_eval_mode(arch):
    model = tiny(arch)
    assert not any(p.requires_grad for p in model.parameters())
    assert not any(m.training for m in model.modules())


def test_tiny_random_models_are_reproducible_and_say_they_are_meaningless():
    with pytest.warns(UserWarning, match="meaningless"):
        a = load_clip(RN101, "tiny-random")
    b = tiny(RN101)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name


def test_unknown_model_kind_is_an_input_error():
    with pytest.raises(InputError, match="unknown model kind"):
        load_clip(RN101, "huge")


# --- our forwards against open_clip's -------------------------------------------------------------


def test_resnet_features_equal_open_clips_forward(rn101, images):
    f = resnet_features(rn101.visual, images)
    assert torch.allclose(f.embedding, rn101.visual(images), atol=1e-6)
    if hasattr(rn101.visual, "forward_intermediates"):
        maps = rn101.visual.forward_intermediates(images)["image_intermediates"]
        by_shape = {tuple(m.shape[2:]): m for m in maps}
        assert torch.allclose(f.layer2, by_shape[(28, 28)], atol=1e-6)
        assert torch.allclose(f.layer3, by_shape[(14, 14)], atol=1e-6)


def test_vit_block_outputs_equal_open_clips_forward(vit, images):
    out = vit_block_outputs(vit.visual, images, list(range(12)))
    final = vit.visual.ln_post(out[11][:, 0]) @ vit.visual.proj  # OpenAI ViT: CLS token, projected
    assert torch.allclose(final, vit.visual(images), atol=1e-5)
    if hasattr(vit.visual, "forward_intermediates"):
        r = vit.visual.forward_intermediates(images, indices=12, output_fmt="NLC", output_extra_tokens=True)
        for i, (patches, prefix) in enumerate(zip(r["image_intermediates"], r["image_intermediates_prefix"])):
            assert torch.allclose(out[i], torch.cat([prefix, patches], 1), atol=1e-5)


def test_layer_numbers_are_the_official_codes_resblocks_indices(vit, images):
    """The official code reads layer l with a forward hook on `visual.transformer.resblocks[l]`:
    layer 11 is the last block (what `ln_post` receives), layer 0 the first."""
    hooked = {}

    def keep(index):
        def hook(_module, _inputs, output):
            tokens = output[0] if isinstance(output, tuple) else output
            if tokens.shape[0] != images.shape[0]:  # a sequence-first transformer: (L, B, D)
                tokens = tokens.transpose(0, 1)
            hooked[index] = tokens.detach().clone()

        return hook

    blocks = vit.visual.transformer.resblocks
    handles = [blocks[i].register_forward_hook(keep(i)) for i in (0, 4, 11)]
    try:
        vit.visual(images)
    finally:
        for handle in handles:
            handle.remove()
    ours = vit_block_outputs(vit.visual, images, [0, 4, 11])
    for layer in (0, 4, 11):
        assert torch.allclose(ours[layer], hooked[layer], atol=1e-5), f"layer {layer} is resblocks[{layer}]"
    assert not torch.allclose(ours[0], ours[11], atol=1e-3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_self_attention_is_the_modules_own_arithmetic(vit, dtype):
    """Contiguous (L, B, D) tokens into the attention give what the batch-first module gives, with
    the same gradients, in fp32 and under bf16 autocast."""
    attn = vit.visual.transformer.resblocks[0].attn
    tokens = torch.randn(3, 50, attn.embed_dim, generator=torch.Generator().manual_seed(0))
    results = []
    module_call = lambda y: attn(y, y, y, need_weights=True, average_attn_weights=True)  # noqa: E731
    for call in (module_call, lambda y: self_attention(attn, y, True)):
        y = tokens.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            out, weights = call(y)
        out.float().square().sum().backward()
        results.append((out, weights, y.grad))
    for ours, module in zip(results[1], results[0]):
        assert ours.shape == module.shape and torch.allclose(ours.float(), module.float(), atol=1e-5, rtol=1e-3)


def reference_saliency(visual, x):
    """docs/method.md#stroke-initialisation by hand: per block, softmax(q k^T / sqrt(d)) from the
    attention's own projection
    weights, averaged over heads; the CLS row against the 49 patches, averaged over the 12 blocks;
    7 x 7 row-major, bicubic to 224, min-max per image."""
    tokens = visual._embeds(x)
    rows = []
    for block in visual.transformer.resblocks:
        attn = block.attn
        y = block.ln_1(tokens)
        q, k, _ = F.linear(y, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
        heads, d = attn.num_heads, q.shape[-1] // attn.num_heads
        q = q.unflatten(-1, (heads, d)).transpose(1, 2)
        k = k.unflatten(-1, (heads, d)).transpose(1, 2)
        probs = torch.softmax(q @ k.transpose(-1, -2) / d**0.5, dim=-1).mean(1)  # (B, 50, 50)
        rows.append(probs[:, 0, 1:])
        tokens = block(tokens)
    grid = torch.stack(rows).mean(0).view(-1, 1, 7, 7)
    up = F.interpolate(grid, size=(224, 224), mode="bicubic", align_corners=False)[:, 0]
    lo, hi = up.amin((1, 2), keepdim=True), up.amax((1, 2), keepdim=True)
    return (up - lo) / (hi - lo)


def test_attention_saliency_is_the_cls_attention_map(vit, images):
    s = attention_saliency(vit.visual, images)
    assert s.shape == (2, 224, 224)
    assert s.min() >= 0 and s.max() <= 1
    assert torch.allclose(s.amin((1, 2)), torch.zeros(2)) and torch.allclose(s.amax((1, 2)), torch.ones(2))
    with torch.no_grad():
        ref = reference_saliency(vit.visual, images)
    assert torch.allclose(s, ref, atol=1e-4)
    assert not torch.allclose(s[0], s[1], atol=1e-3), "the map depends on the image"


# --- loading OpenAI weights from a folder ---------------------------------------------------------


def perturbed(model):
    """A copy of model's state dict with every float tensor shifted, so a load is visible."""
    return {k: (v + 0.25 if v.is_floating_point() else v.clone()) for k, v in model.state_dict().items()}


def save_torchscript(state, path):
    """A TorchScript archive holding `state` as OpenAI publishes CLIP (state dict keys, plus the
    input_resolution / context_length / vocab_size entries the `clip` package strips)."""
    root = torch.nn.Module()
    state = dict(
        state, input_resolution=torch.tensor(224), context_length=torch.tensor(77), vocab_size=torch.tensor(49408)
    )
    for key, value in state.items():
        *parents, leaf = key.split(".")
        module = root
        for name in parents:
            if not hasattr(module, name):
                module.add_module(name, torch.nn.Module())
            module = getattr(module, name)
        module.register_buffer(leaf, value.clone())
    torch.jit.script(root).save(str(path))


@pytest.mark.parametrize("fmt", ["state_dict", "torchscript"])
def test_weights_load_from_the_weights_dir(tmp_path, isolated_home, fmt):
    wanted = perturbed(tiny(RN101))
    if fmt == "state_dict":
        torch.save(wanted, tmp_path / "RN101.pt")
    else:
        save_torchscript(wanted, tmp_path / "RN101.pt")
    path = find_checkpoint(RN101, tmp_path)
    assert path == tmp_path / "RN101.pt"
    model = tiny(RN101)
    _load_weights(model, path, RN101)
    got = model.state_dict()
    assert got.keys() == wanted.keys()
    for key in wanted:
        assert torch.equal(got[key], wanted[key]), key


@pytest.mark.parametrize("content", ["random", "empty", "text", "truncated"])
def test_a_corrupt_checkpoint_is_an_input_error(tmp_path, content):
    path = tmp_path / "RN101.pt"
    if content == "truncated":
        buffer = io.BytesIO()
        torch.save(tiny(RN101).state_dict(), buffer)
        path.write_bytes(buffer.getvalue()[: buffer.tell() // 2])
    else:
        path.write_bytes({"random": NOISE, "empty": b"", "text": b"<html>404</html>\n"}[content])
    with pytest.raises(InputError) as info:
        _load_weights(tiny(RN101), path, RN101)
    assert info.value.exit_code == 2
    assert str(path) in info.value.message and "RN101.pt" in info.value.hint


def test_a_corrupt_checkpoint_message_is_one_line(tmp_path):
    path = tmp_path / "RN101.pt"
    path.write_bytes(NOISE)
    with pytest.raises(InputError) as info:
        _load_weights(tiny(RN101), path, RN101)
    assert "\n" not in info.value.message and "\x1b" not in info.value.message


@pytest.mark.parametrize("payload", [torch.zeros(3), [1, 2]], ids=["tensor", "list"])
def test_a_torch_file_that_is_not_a_state_dict_is_an_input_error(tmp_path, payload):
    path = tmp_path / "RN101.pt"
    torch.save(payload, path)
    with pytest.raises(InputError):
        _load_weights(tiny(RN101), path, RN101)


def test_weights_of_another_architecture_are_an_input_error(tmp_path):
    path = tmp_path / "RN101.pt"
    torch.save(tiny(VIT_B32).state_dict(), path)
    with pytest.raises(InputError, match="does not hold RN101 weights"):
        _load_weights(tiny(RN101), path, RN101)


# --- finding checkpoints --------------------------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG cache folders are a Linux convention")
def test_cache_dir_follows_xdg_cache_home(isolated_home, tmp_path):
    assert cache_dir() == tmp_path / "xdg-cache" / "sketch-abstraction" / "clip"


def test_find_checkpoint_prefers_weights_dir_then_our_cache_then_the_clip_cache(tmp_path, isolated_home):
    weights_dir = tmp_path / "weights"
    places = [weights_dir, cache_dir(), isolated_home / ".cache" / "clip"]
    for folder in places:
        folder.mkdir(parents=True)
        (folder / "RN101.pt").write_bytes(b"x")
    assert find_checkpoint(RN101, weights_dir) == weights_dir / "RN101.pt"
    assert find_checkpoint(RN101) == places[1] / "RN101.pt"
    (places[1] / "RN101.pt").unlink()
    assert find_checkpoint(RN101) == places[2] / "RN101.pt"
    (places[2] / "RN101.pt").unlink()
    with pytest.raises(WeightsMissing) as info:
        find_checkpoint(RN101)  # offline (conftest) and nothing cached: no download attempt
    err = info.value
    assert err.exit_code == 3
    assert "RN101.pt" in err.message and OFFLINE_ENV in err.message
    assert "--weights-dir" in err.hint and "ViT-B-32.pt" in err.hint


def test_a_weights_dir_without_the_file_is_not_silently_bypassed(tmp_path, isolated_home):
    (isolated_home / ".cache" / "clip").mkdir(parents=True)
    (isolated_home / ".cache" / "clip" / "ViT-B-32.pt").write_bytes(b"x")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(WeightsMissing) as info:
        find_checkpoint(VIT_B32, empty)
    assert "ViT-B-32.pt" in info.value.message and str(empty) in info.value.message


# --- runtime options ------------------------------------------------------------------------------


def test_runtime_rejects_bad_options_before_loading_anything(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        Runtime.create("cpu", "openai", weights_dir=str(tmp_path / "nope"))
    with pytest.raises(InputError, match="unknown models"):
        Runtime.create("cpu", "big")
    with pytest.raises(InputError, match="unknown precision"):
        Runtime.create("cpu", "tiny-random", precision="fp8")
    with pytest.raises(InputError, match="unknown device"):
        Runtime.create("tpu", "tiny-random")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_asking_for_absent_cuda_is_a_device_error():
    with pytest.raises(DeviceError) as info:
        Runtime.create("cuda", "tiny-random")
    assert info.value.exit_code == 4 and "--device cpu" in info.value.hint


def test_runtime_keeps_models_loaded(runtime):
    assert runtime.clip(RN101) is runtime.clip(RN101)
    assert runtime.device.type == "cpu"


def test_calibrated_random_resnet_keeps_activations_of_order_one(images):
    """open_clip's fresh ResNet zeroes every residual branch and leaves batch-norm statistics at 0/1,
    so activations shrink to ~0.003 by layer4 (and fp16 gradients vanish). Calibrated on photo-like
    images and sketches, every block's output stays O(1), as in a trained network."""
    from engine.clip.calibrate import calibrate_resnet, calibration_images

    visual = tiny(RN101).visual
    generator = torch.Generator().manual_seed(0)
    calibrate_resnet(visual, normalize(calibration_images(4, generator)), generator)
    assert not visual.training and all(not m.training for m in visual.modules()), "back in eval mode"
    sizes = {}
    hooks = [
        module.register_forward_hook(lambda _m, _i, out, name=name: sizes.__setitem__(name, out.square().mean().sqrt()))
        for name, module in visual.named_modules()
        if name.startswith("layer") and name.count(".") == 1
    ]
    with torch.no_grad():
        visual(images)
    for hook in hooks:
        hook.remove()
    assert len(sizes) == 4 and all(0.2 < float(size) < 5 for size in sizes.values()), sizes
