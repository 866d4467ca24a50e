"""Memory: what a job will need, what the device has free, refusing a job that cannot fit before it
allocates anything, recognising an out-of-memory failure, and giving freed memory back.

A job's peak is dominated by three terms, each measured rather than guessed:
- CLIP with gradients: every sketch is seen in 1 + num_aug views per iteration, and autograd keeps
  the activations of each view for the backward pass. The bytes it keeps per 224 px image (and the
  bytes it keeps whatever the batch, such as weights cast for autocast) are measured once per model
  by one forward pass at batch 1 and 2 with a saved-tensors hook (`footprint`), on the job's own
  device and precision. The backward pass adds gradient buffers on top: BACKWARD_FACTOR.
- The rasteriser: (stroke, tile) pairs that a stroke reaches; STROKE_BYTES per stroke.
- What lives through the whole job: the target augmentation bank (the features the loss compares,
  per bank entry, measured by the same forward pass) and, for scenes, both MLPs per problem with
  their gradients and Adam moments.
benchmarks/memory.py prints the estimate next to the measured peak of real runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import io
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.errors import DeviceError
from bridge.params import MASK_NONE, ClipassoParams, RefineRequest, Request, SketchRequest
from bridge.wording import count

BASE_BYTES = 256 * 2**20  # target, saliency and edge maps, start points, results: a job of one stroke
RASTER_SCRATCH_BYTES = 384 * 2**20  # the rasteriser's passing scratch (its distance search runs in chunks)
BACKWARD_FACTOR = 1.25  # peak over the activations kept for backward (gradient buffers): 1.15 measured
CANVAS_BYTES = 4 * 3 * 224 * 224 * 4  # per view: the drawn, augmented and normalised images, their grads
STROKE_BYTES = 32 * 2**10  # rasteriser pairs per stroke: 13 KiB as initialised, 25 KiB when 3x longer
OPTIMISER_BYTES_PER_PARAM = 16  # fp32 weight, its gradient, Adam's two moments
HEADROOM = 0.9  # a job may plan on this share of the free memory
# On a CPU (and Apple's unified memory) CLIP sees a batch in passes that keep at most this much for
# backward: RN101 keeps 134 MiB per fp32 image, so the default 12-sketch batch would hold 8 GiB that
# every layer streams through memory and the allocator maps afresh each iteration, where one sketch
# cost less per sketch (benchmarks/README.md, "CLIPasso"). GPUs keep the whole batch busy.
PASS_BYTES = 1 << 30
_FEATURES = {  # the modules whose outputs a method keeps per bank entry (its loss's inputs)
    "sketch": re.compile(r"layer2|layer3|attnpool"),  # RN101, CLIPasso
    "scene": re.compile(r"transformer\.resblocks\.\d+"),  # ViT-B/32 block outputs, CLIPascene
}


@dataclass(frozen=True)
class Footprint:
    """What one CLIP image tower keeps in a forward pass with gradients on, in bytes."""

    per_image: int  # activations kept for backward, per 224 px image
    fixed: int  # kept whatever the batch (weights cast for autocast, ...)
    features: int  # the method's features of one image (one entry of the augmentation bank)


_footprints: dict[tuple, Footprint] = {}


def footprint(runtime: Any, arch: str, kind: str) -> Footprint:
    """Measure (once per model, device and precision) what `arch` keeps for `kind`'s loss."""
    import torch

    model = runtime.clip(arch).visual
    key = (id(model), str(runtime.device), runtime.precision, kind)
    if key not in _footprints:
        kept = {}
        for batch in (1, 2):
            saved: dict[int, int] = {}
            outputs: list[int] = []

            def pack(tensor, saved=saved):
                storage = tensor.untyped_storage()
                saved[storage.data_ptr()] = storage.nbytes()
                return tensor

            def keep(_module, _inputs, output, outputs=outputs):
                tensor = output[0] if isinstance(output, tuple) else output
                outputs.append(tensor.numel() * tensor.element_size())

            hooks = [m.register_forward_hook(keep) for n, m in model.named_modules() if _FEATURES[kind].fullmatch(n)]
            images = torch.rand(batch, 3, 224, 224, device=runtime.device, requires_grad=True)
            try:
                with (
                    torch.enable_grad(),
                    torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
                    runtime.autocast(),
                ):
                    model(images.to(next(model.parameters()).dtype))
            finally:
                for hook in hooks:
                    hook.remove()
            kept[batch] = (sum(saved.values()), sum(outputs))
        per_image = max(0, kept[2][0] - kept[1][0])
        _footprints[key] = Footprint(per_image, max(0, kept[1][0] - per_image), kept[2][1] - kept[1][1])
    return _footprints[key]


def sketches_per_pass(runtime: Any, views: int, sketches: int) -> int:
    """How many of `sketches` CLIPasso sketches (each seen in `views` images) one CLIP forward +
    backward takes at once on the runtime's device: all of them on CUDA; on a CPU or MPS as many as
    keep the pass's activations within PASS_BYTES (at least one), from the measured footprint."""
    from engine.clip.models import RN101

    if runtime.device.type == "cuda":
        return max(1, sketches)
    per_sketch = views * footprint(runtime, RN101, "sketch").per_image
    return max(1, min(sketches, PASS_BYTES // max(1, per_sketch)))


@dataclass(frozen=True)
class Estimate:
    total: int  # bytes at the job's peak
    sketches: int  # in memory at once: optimised together, or a CLIPasso job's sketches per pass
    per_sketch: int  # bytes each of them adds
    what: str  # the job's size in words, for messages


def estimate(runtime: Any, kind: str, request: Request) -> Estimate:
    """The job's peak memory on the runtime's device (see the module docstring)."""
    from engine.clip.models import RN101, VIT_B32
    from engine.methods.augment import bank_size

    state = 0  # bytes a sketch holds for the whole job besides its images (scenes: its MLPs)
    if isinstance(request, SketchRequest):
        p = request.params
        views = 1 + p.num_aug
        total_sketches = len(p.strokes) * len(p.seeds)
        sketches = sketches_per_pass(runtime, views, total_sketches)  # CLIP sees them a pass at a time
        strokes = sketches * max(p.strokes)  # the rasteriser draws a pass's sketches, padded to the largest
        shape = footprint(runtime, RN101, kind)
        lasting = (p.aug_bank + 1) * shape.features
        what = (
            f"{count(total_sketches, 'sketch', 'sketches')}: {count(len(p.strokes), 'level')} x "
            f"{count(len(p.seeds), 'seed')}, {max(p.strokes)} strokes at most"
        )
    elif isinstance(request, RefineRequest):  # one CLIPasso sketch; importance runs CLIP without gradients
        sketches, strokes = 1, len(request.strokes) + request.params.add
        shape = footprint(runtime, RN101, "sketch")
        lasting = (request.params.aug_bank + 1) * shape.features
        what = f"1 sketch: a refinement of {strokes} strokes"
        views = 1 + ClipassoParams.num_aug
    else:
        sp = request.params  # SceneParams; `p` above is ClipassoParams
        parts = 1 if isinstance(request.mask, str) and request.mask == MASK_NONE else 2
        sketches = parts * len(sp.layers) * len(sp.seeds)
        strokes = sketches * sp.strokes
        shape = footprint(runtime, VIT_B32, kind)
        points = sp.strokes * sp.control_points * 2
        mlps = 2 * points * sp.hidden + 2 * sp.strokes * sp.hidden + 2 * sp.hidden**2  # MLP_loc, MLP_simp
        bank = bank_size(sp.aug_bank, runtime.device)  # `auto`: the bank this device will build
        lasting = parts * (bank + 1) * shape.features
        state = mlps * OPTIMISER_BYTES_PER_PARAM  # each sketch's own MLPs and their Adam moments
        what = (
            f"{count(sketches, 'sketch', 'sketches')}: {count(parts, 'part')} x {count(len(sp.layers), 'layer')} x "
            f"{count(len(sp.seeds), 'seed')}, {sp.strokes} strokes"
        )
        views = 1 + sp.num_aug
    per_sketch = views * (math.ceil(shape.per_image * BACKWARD_FACTOR) + CANVAS_BYTES) + state
    fixed = BASE_BYTES + RASTER_SCRATCH_BYTES + shape.fixed + lasting + _image_bytes(request.image)
    total = fixed + sketches * per_sketch + strokes * STROKE_BYTES
    return Estimate(total, sketches, (total - fixed) // max(1, sketches), what)


def check_fits(runtime: Any, kind: str, request: Request) -> None:
    """DeviceError, before anything is allocated, when the job will not fit in the free memory."""
    free = available(runtime.device)
    if free is None:
        return
    need = estimate(runtime, kind, request)
    if need.total <= HEADROOM * free:
        return
    fits = int((HEADROOM * free - (need.total - need.sketches * need.per_sketch)) // max(1, need.per_sketch))
    fewer = "fewer seeds or layers" if kind == "scene" else "fewer seeds or levels"
    fix = (
        f"about {count(fits, 'sketch', 'sketches')} of this size fit: use {fewer} (or fewer strokes)"
        if fits >= 1
        else "use fewer strokes and a smaller --aug-bank"
    )
    raise DeviceError(
        f"this job ({need.what}) needs about {_gib(need.total)} of memory on "
        f"{runtime.device}, but only {_gib(free)} is free",
        f"{fix}, close other programs, or run it on a device with more memory",
    )


def available(device: Any) -> int | None:
    """Bytes a job may still allocate on `device`; None when that cannot be told (no check then)."""
    import torch

    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    if device.type == "mps":
        try:
            return int(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
        except (AttributeError, RuntimeError):
            return None
    limits = [v for v in (_meminfo_available(), _cgroup_available(), _address_space_available()) if v is not None]
    return min(limits) if limits else None


def _meminfo_available() -> int | None:
    """Memory the kernel can give without swapping, plus free swap (slow, but a job there finishes)."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        return (int(fields["MemAvailable"].split()[0]) + int(fields.get("SwapFree", "0").split()[0])) * 1024
    except (OSError, ValueError, KeyError, IndexError):
        return None


CGROUP_UNLIMITED = 2**62  # cgroup v1 writes "no limit" as the largest page-aligned number (~2^63)


def _cgroup_available(proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Room left under this process's cgroup memory limits, the tightest of its group's and those
    above it: cgroup v2 (memory.max; containers, systemd slices) and v1 (memory.limit_in_bytes;
    older Docker hosts, hybrid systemd hosts)."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    rooms: list[int] = []
    for line in lines:
        hierarchy, controllers, group = [*line.split(":", 2), "", ""][:3]
        if hierarchy == "0" and controllers == "":
            rooms += _cgroup_rooms(root, group, "memory.max", "memory.current")
        elif "memory" in controllers.split(","):
            rooms += _cgroup_rooms(root / "memory", group, "memory.limit_in_bytes", "memory.usage_in_bytes")
    return min(rooms) if rooms else None


def _cgroup_rooms(mount: Path, group: str, limit_file: str, usage_file: str) -> list[int]:
    """Limit less usage of `group` and each group above it in the hierarchy mounted at `mount`, for
    those with a limit. A container sees its own group as the mount's root while /proc names the
    whole path: the group's folder is the longest tail of that path that exists."""
    parts = [p for p in group.split("/") if p]
    folder = next((mount.joinpath(*parts[i:]) for i in range(len(parts)) if mount.joinpath(*parts[i:]).is_dir()), mount)
    rooms = []
    while True:
        try:
            limit = (folder / limit_file).read_text().strip()
            if limit != "max" and int(limit) < CGROUP_UNLIMITED:
                rooms.append(int(limit) - int((folder / usage_file).read_text()))
        except (OSError, ValueError):
            pass
        if folder == mount or mount not in folder.parents:
            return rooms
        folder = folder.parent


def _address_space_available() -> int | None:
    """Room left under RLIMIT_AS (ulimit -v), which counts address space, not resident memory."""
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        if limit == resource.RLIM_INFINITY:
            return None
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return limit - int(line.split()[1]) * 1024
    except (ImportError, OSError, ValueError, IndexError):
        pass
    return None


def _image_bytes(source: Any) -> int:
    """The photo padded to its square, decoded, twice (the square and the pasted copy), from its
    header. 0 for a photo the loader will refuse: it says why (bad input), before any memory matters."""
    from PIL import Image

    from bridge.files import open_regular
    from bridge.limits import IMAGE_FORMATS, check_image_size

    try:
        with (
            (
                contextlib.nullcontext(io.BytesIO(source))
                if isinstance(source, bytes)
                else open_regular(source, "image")
            ) as fp,
            Image.open(fp, formats=IMAGE_FORMATS) as im,
        ):  # a FIFO is refused, not waited on
            width, height = im.size
            check_image_size(width, height, "the image")
            return 2 * 3 * max(width, height) ** 2
    except Exception:  # unreadable or over the limits
        return 0


def is_out_of_memory(err: BaseException) -> bool:
    """Whether `err` is the device or the system running out of memory (so the user gets the fix)."""
    if isinstance(err, MemoryError):
        return True
    torch = sys.modules.get("torch")
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)
    if oom is not None and isinstance(err, oom):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and any(
        words in text for words in ("out of memory", "can't allocate memory", "cannot allocate memory")
    )


OUT_OF_MEMORY_HINT = "use fewer seeds, levels or strokes, close other programs, or start the engine with --device cpu"


def _gib(size: float) -> str:
    return f"{size / 2**30:.1f} GiB"


_LIBC = ctypes.CDLL(ctypes.util.find_library("c")) if sys.platform.startswith("linux") else None


def release_to_system() -> None:
    """Return the heap's free memory to the system. glibc keeps freed blocks for reuse, so an engine
    that once held a large message or job would stay that large; elsewhere the allocator does this."""
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is not None:
        trim(0)
