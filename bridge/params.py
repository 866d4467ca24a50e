"""Job and engine settings as plain dataclasses: the one source of defaults, validated once at the edge.

Part of the light package: the command line, the engine, the client and the Inkscape extension all
check and describe options with these classes, without loading the numeric stack.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass
from typing import Any

from bridge.errors import InputError
from bridge.files import read_bounded
from bridge.limits import MAX_COORDINATE, MAX_FILE_BYTES

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
MODEL_KINDS = ("openai", "random", "tiny-random")
RENDERERS = ("ours", "diffvg")  # diffvg: the official code's rasteriser, when pydiffvg is installed
MASK_NONE, MASK_AUTO = "none", "auto"
AUG_BANK_AUTO = -1  # scenes: fresh augmentations every step on a GPU, a bank of 128 on a CPU (docs/method.md)
INPAINT_METHODS = ("lama", "telea")  # a scene's background: LaMa (the official code's), or OpenCV's Telea
MAX_HALF_WIDTH = 50  # canvas px: a stroke 100 px wide on the 224 px canvas
_HEX_COLOUR = re.compile(r"#(?:[0-9a-fA-F]{3}){1,2}")
Source = str | os.PathLike[str] | bytes  # a file's path, or its bytes
MAX_STROKES = 1024  # strokes in one sketch (a level, or a sketch to refine)
STYLE_PEN, STYLE_INK = "pen", "ink"  # pen: one width for all strokes; ink: a width per control point (PowerStroke)
STYLES = (STYLE_PEN, STYLE_INK)


@dataclass(frozen=True)
class ClipassoParams:
    """CLIPasso's settings; defaults are the paper's (docs/method.md#clipasso)."""

    strokes: tuple[int, ...] = (32, 16, 8, 4)  # one abstraction level per count
    seeds: tuple[int, ...] = (0, 1000, 2000)  # each level keeps its best seed
    iterations: int = 2000
    control_points: int = 4  # 4 cubic, 3 quadratic, 2 straight
    half_width: float = 1.5  # canvas px (diffvg's stroke_width)
    lr: float = 1.0
    eval_every: int = 10
    min_delta: float = 1e-5
    num_aug: int = 4
    aug_bank: int = 128  # 0 = recompute target augmentations every iteration, as the official code
    temperature: float = 0.3
    walk_step: float = 0.025  # random-walk step, fraction of the canvas

    def validate(self) -> ClipassoParams:
        """Raise InputError naming the first bad value; return self when all are usable."""
        checks = [
            (
                len(self.strokes) > 0 and all(1 <= n <= MAX_STROKES for n in self.strokes),
                f"stroke counts must be between 1 and {MAX_STROKES}, got {list(self.strokes)}",
            ),
            (len(self.strokes) <= 16, f"at most 16 levels, got {len(self.strokes)}"),
            (len(set(self.strokes)) == len(self.strokes), f"stroke counts repeat: {list(self.strokes)}"),
            (1 <= len(self.seeds) <= 16, f"seeds must number 1 to 16, got {len(self.seeds)}"),
            (1 <= self.iterations <= 100_000, f"iterations must be 1 to 100000, got {self.iterations}"),
            (self.control_points in (2, 3, 4), f"control points must be 2, 3 or 4, got {self.control_points}"),
            (
                0 <= self.min_delta < math.inf,  # also refuses NaN
                f"the convergence threshold must be a number, 0 (run every iteration) or more, got {self.min_delta}",
            ),
            (
                0 < self.half_width <= MAX_HALF_WIDTH,
                f"stroke width must be > 0 and sane, got half-width {self.half_width}",
            ),
            (
                0 < self.lr <= 100
                and 1 <= self.eval_every <= 100_000
                and 0 <= self.num_aug <= 32
                and 0 <= self.aug_bank <= 4096
                and 0 < self.walk_step <= 1
                and 0 < self.temperature <= 100,
                "lr (0-100], eval interval 1-100000, augmentations 0-32, bank 0-4096, walk step (0-1] and "
                "temperature must be in range",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message, "see `sketch-abstraction sketch --help` for valid values")
        return self


@dataclass(frozen=True)
class SketchRequest:
    """One object-sketch job. `image` and a mask file may be paths or encoded bytes."""

    image: Source
    params: ClipassoParams = ClipassoParams()
    mask: Source = MASK_NONE  # "none", "auto", or a mask image
    width: float | None = None  # SVG stroke width in photo px; None: the canvas width, scaled
    color: str = "#000000"
    style: str = STYLE_PEN  # STYLES: ink adds a width per control point (docs/method.md#ink)

    def validate(self) -> SketchRequest:
        _check_look(self.color, self.width, self.style)
        self.params.validate()
        return self


# Ratio step of the simplicity schedule per ViT layer 0..11 (index = layer; docs/method.md#simplicity-axis).
# The official scripts give layers 2, 8, 11 (background 0.35, 0.5, 0.85; object 0.4, 0.5, 0.9) and
# 3, 4, 7 (0.45, 0.45, 0.45; object 0.45, 0.45, 0.4). Layers 0 and 1 take layer 2's step, the others
# are interpolated linearly (our choice: the official code has no value for them).
_STEPS_BACKGROUND = (0.35, 0.35, 0.35, 0.45, 0.45, 0.45, 0.45, 0.45, 0.5, 0.62, 0.73, 0.85)
_STEPS_OBJECT = (0.4, 0.4, 0.4, 0.45, 0.45, 0.43, 0.42, 0.4, 0.5, 0.63, 0.77, 0.9)
VIT_LAYERS = 12  # ViT-B/32 layers 0..11: layer l is the output of visual.transformer.resblocks[l]


@dataclass(frozen=True)
class SceneParams:
    """CLIPascene's settings; defaults are the official code's (docs/method.md#clipascene)."""

    layers: tuple[int, ...] = (2, 8, 11)  # fidelity columns: ViT-B/32 layers, 0 (first block) to 11 (last)
    levels: int = 8  # simplified rows below the fidelity row
    strokes: int = 64
    seeds: tuple[int, ...] = (0, 1000)  # every stage keeps its best seed
    iterations: int = 0  # cap on every stage, for quick runs; 0 = the counts below
    fidelity_iterations_background: int = 1500
    fidelity_iterations_object: int = 1000
    fidelity_iterations_object_shallow: int = 600  # object columns with a layer below 8
    fidelity_eval_every: int = 50
    fidelity_eval_from: int = 400
    simplicity_iterations: int = 400
    simplicity_eval_every: int = 100
    simplicity_eval_from: int = 100
    control_points: int = 4
    half_width: float = 1.5  # canvas px; in simplicity the rendered half-width is this x presence
    hidden: int = 1000  # width of both MLPs' hidden layers
    offset_scale: float = 0.1  # MLP_loc: points = input + 0.1 x MLP(input)
    point_noise: float = 1e-4  # px, added to MLP_loc's points every forward
    loc_lr: float = 1e-4
    simplicity_lr: float = 5e-5
    simplicity_input: float = 1.5  # MLP_simp's constant input value
    gumbel_tau: float = 0.2
    keep_threshold: float = 0.7  # export keeps a stroke whose presence exceeds this
    object_layer: int = 4  # the object's extra CLIP term (resblocks[4]) ...
    object_layer_weight: float = 0.5  # ... and its weight
    steps_background: tuple[float, ...] = _STEPS_BACKGROUND  # ratio step per layer 0..11
    steps_object: tuple[float, ...] = _STEPS_OBJECT
    num_aug: int = 4
    aug_bank: int = AUG_BANK_AUTO  # 0 = recompute target augmentations every iteration, as the official code
    temperature: float = 0.3
    walk_step: float = 0.025

    def validate(self) -> SceneParams:
        """Raise InputError naming the first bad value; return self when all are usable."""
        counts = (
            self.iterations,
            self.fidelity_iterations_background,
            self.fidelity_iterations_object,
            self.fidelity_iterations_object_shallow,
            self.simplicity_iterations,
        )
        checks = [
            (
                len(self.layers) > 0 and all(0 <= v < VIT_LAYERS for v in self.layers),
                f"layers must be ViT-B/32 layers 0 to {VIT_LAYERS - 1}, got {list(self.layers)}",
            ),
            (len(set(self.layers)) == len(self.layers), f"layers repeat: {list(self.layers)}"),
            (0 <= self.levels <= 16, f"levels must be 0 to 16, got {self.levels}"),
            (1 <= self.strokes <= 256, f"strokes must be 1 to 256, got {self.strokes}"),
            (1 <= len(self.seeds) <= 16, f"seeds must number 1 to 16, got {len(self.seeds)}"),
            (0 <= self.iterations <= 100_000, f"iterations must be 0 (no cap) to 100000, got {self.iterations}"),
            (all(1 <= n <= 100_000 for n in counts[1:]), "stage iteration counts must be 1 to 100000"),
            (self.control_points in (2, 3, 4), f"control points must be 2, 3 or 4, got {self.control_points}"),
            (
                0 < self.half_width <= MAX_HALF_WIDTH,
                f"stroke width must be > 0 and sane, got half-width {self.half_width}",
            ),
            (0 <= self.object_layer < VIT_LAYERS, f"object layer must be 0 to {VIT_LAYERS - 1}"),
            (
                len(self.steps_background) == len(self.steps_object) == VIT_LAYERS
                and all(s > 0 for s in self.steps_background + self.steps_object),
                f"ratio steps must be {VIT_LAYERS} positive numbers, one per layer",
            ),
            (
                min(self.fidelity_eval_every, self.simplicity_eval_every, self.hidden) >= 1
                and min(self.fidelity_eval_from, self.simplicity_eval_from, self.num_aug, self.aug_bank + 1) >= 0
                and min(self.loc_lr, self.simplicity_lr, self.gumbel_tau, self.temperature) > 0,
                "eval intervals, hidden width, learning rates and temperatures must be positive",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message, "see `sketch-abstraction scene --help` for valid values")
        return self

    def cap(self, count: int) -> int:
        """A stage's iteration count under the `iterations` cap."""
        return min(count, self.iterations) if self.iterations else count


PAPER_GRID_ROWS = (1, 3, 5, 7)  # the rows of the paper's 4 x 4 figures


@dataclass(frozen=True)
class SceneRequest:
    """One scene-sketch job: the fidelity x simplicity matrix. `image` and a mask file may be paths or
    encoded bytes. By default the scene is split as the official pipeline does (U2-Net mask, object
    and LaMa-filled background apart); with `none` the whole image is one object (not the paper's method)."""

    image: Source
    params: SceneParams = SceneParams()
    mask: Source = MASK_AUTO  # "auto" (U2-Net), "none", or a mask image (white = object)
    inpaint: str = INPAINT_METHODS[0]  # how the background's hole is filled: "lama" or "telea"
    width: float | None = None  # SVG stroke width in photo px; None: the canvas width, scaled
    color: str = "#000000"
    style: str = STYLE_PEN  # STYLES: ink adds a width per control point (docs/method.md#ink)
    paper_grid: bool = False  # write only rows 1, 3, 5, 7 (the paper's 4 x 4 figures)

    def validate(self) -> SceneRequest:
        _check_look(self.color, self.width, self.style)
        self.params.validate()
        if self.inpaint not in INPAINT_METHODS:
            raise InputError(
                f"inpaint must be one of {', '.join(INPAINT_METHODS)}, got {self.inpaint!r}",
                "use --inpaint lama (the official method) or --inpaint telea (no model weights needed)",
            )
        if not isinstance(self.paper_grid, bool):
            raise InputError(f"paper_grid must be true or false, got {self.paper_grid!r}", "send a boolean")
        if self.paper_grid and self.params.levels < max(PAPER_GRID_ROWS):
            raise InputError(
                f"the paper's grid shows rows {list(PAPER_GRID_ROWS)}, but --levels is {self.params.levels}",
                f"use --levels {max(PAPER_GRID_ROWS)} or more",
            )
        return self

    @property
    def rows(self) -> tuple[int, ...]:
        """Matrix rows written to the SVG: 0 is the fidelity sketch, 1..levels the simplified ones."""
        return PAPER_GRID_ROWS if self.paper_grid else tuple(range(self.params.levels + 1))


def canvas_half_width(width: float, scale: float) -> float:
    """The canvas half-width of a stroke `width` photo px wide, on a canvas of `scale` photo px per
    canvas px; InputError in the user's own units (photo px) when it is too wide for this photo."""
    half = width / 2 / scale
    if half > MAX_HALF_WIDTH:
        raise InputError(
            f"stroke width (--width) {width:g} px is too wide for this photo: "
            f"at most {2 * MAX_HALF_WIDTH * scale:.0f} px",
            f"try --width {max(1, round(3 * scale))} (the default look)",
        )
    return half


def _check_look(color: Any, width: Any, style: Any = STYLE_PEN) -> None:
    """The stroke colour, width and style a user gave (every request shares them)."""
    if style not in STYLES:
        raise InputError(f"stroke style (--style) must be one of {', '.join(STYLES)}, got {style!r}", "try --style ink")
    if not isinstance(color, str) or not _HEX_COLOUR.fullmatch(color):
        raise InputError(f"colour (--color) must be a hex colour like #000000, got {color!r}", "try --color '#1a1a1a'")
    if width is not None and not _positive(width):
        raise InputError(f"stroke width (--width) must be a positive width in pixels, got {width!r}", "try --width 3")


MIN_REFINE_ITERATIONS = ClipassoParams.eval_every + 1  # the first evaluation after the start


@dataclass(frozen=True)
class RefineParams:
    """Refine Sketch's settings (docs/method.md#refine-sketch); the optimiser's other settings are
    CLIPasso's (ClipassoParams)."""

    iterations: int = 100  # a refinement of a finished sketch, not a fresh run
    add: int = 0  # new strokes, started on salient edges the sketch does not cover yet
    simplify: int = 0  # 0: keep every stroke; N: drop the least important unlocked strokes, down to N
    seed: int = 0  # draws the added strokes and the augmentations
    aug_bank: int = ClipassoParams.aug_bank

    def validate(self) -> RefineParams:
        checks = [
            (
                MIN_REFINE_ITERATIONS <= self.iterations <= 100_000,
                f"iterations must be {MIN_REFINE_ITERATIONS} to 100000, got {self.iterations} (the result is the "
                f"best of the evaluations every {ClipassoParams.eval_every} iterations)",
            ),
            (0 <= self.add <= MAX_STROKES, f"strokes to add must be 0 to {MAX_STROKES}, got {self.add}"),
            (0 <= self.simplify <= MAX_STROKES, f"simplify must be 0 (off) to {MAX_STROKES} strokes"),
            (not (self.add and self.simplify), "add strokes or simplify, not both at once"),
            (0 <= self.seed < 2**31, f"the seed must be 0 to {2**31 - 1}, got {self.seed}"),
            (0 <= self.aug_bank <= 4096, f"the augmentation bank must be 0 to 4096, got {self.aug_bank}"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message, "see `sketch-abstraction refine --help` for valid values")
        return self


@dataclass(frozen=True)
class RefineRequest:
    """Refine a sketch against its photo: the strokes start where they are and are optimised
    (docs/method.md#refine-sketch); locked strokes stay exactly as given but are drawn and count in
    the loss. Coordinates and widths are in the photo's pixels (x right, y down; pixel i covers
    [i, i + 1)), the space of the engine's SVGs. `image` and a mask file may be paths or bytes."""

    image: Source
    strokes: tuple[tuple[float, ...], ...] = ()  # per stroke x0, y0, x1, y1, ...: 2, 3 or 4 control points
    locked: tuple[bool, ...] = ()  # per stroke
    widths: tuple[float, ...] = ()  # per stroke: the SVG stroke-width
    params: RefineParams = RefineParams()
    mask: Source = MASK_NONE  # as for a sketch: the photo's background whitened before comparing
    width: float | None = None  # added strokes' width; None: the median of `widths`
    color: str = "#000000"
    style: str = STYLE_PEN  # STYLES: ink adds a width per control point (docs/method.md#ink)

    def validate(self) -> RefineRequest:
        _check_look(self.color, self.width, self.style)
        self.params.validate()
        hint = "read the strokes from a sketch layer (sketch-abstraction refine does)"
        n = len(self.strokes) if isinstance(self.strokes, tuple) else 0
        if not 1 <= n <= MAX_STROKES:
            raise InputError(f"a sketch to refine needs 1 to {MAX_STROKES} strokes, got {n}", hint)
        for i, stroke in enumerate(self.strokes):
            if not (isinstance(stroke, tuple) and len(stroke) in (4, 6, 8) and all(map(_coordinate, stroke))):
                raise InputError(
                    f"stroke {i} is not 2, 3 or 4 control points (x, y numbers within {MAX_COORDINATE:g} px of the "
                    f"photo): {stroke!r:.80}",
                    "move the stroke back over the photo" if all(map(_finite, stroke)) else hint,
                )
        if not (isinstance(self.locked, tuple) and len(self.locked) == n and all(type(v) is bool for v in self.locked)):
            raise InputError(f"locked must be one true/false per stroke ({n})", hint)
        if not (isinstance(self.widths, tuple) and len(self.widths) == n and all(_positive(w) for w in self.widths)):
            raise InputError(f"widths must be one positive width in pixels per stroke ({n})", hint)
        free, p = n - sum(self.locked), self.params
        if free == 0 and not p.add:
            raise InputError(
                "every stroke is locked: there is nothing to optimise",
                "unlock some strokes (in Inkscape: Object > Unlock All), or add new ones (--add N)",
            )
        if p.simplify and not n - free <= p.simplify < n:
            raise InputError(
                f"cannot simplify {n} strokes ({n - free} locked) to {p.simplify}",
                f"give a count from {max(n - free, 1)} to {n - 1}; locked strokes are never dropped",
            )
        if n + p.add > MAX_STROKES:
            raise InputError(f"{n} strokes + {p.add} added is over {MAX_STROKES}", "add fewer strokes")
        return self


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _coordinate(value: Any) -> bool:
    return _finite(value) and abs(value) <= MAX_COORDINATE


def _positive(value: Any) -> bool:
    return _finite(value) and 0 < value < 1000


Request = SketchRequest | SceneRequest | RefineRequest
REQUESTS: dict[str, type[SketchRequest] | type[SceneRequest] | type[RefineRequest]] = {
    "sketch": SketchRequest,
    "scene": SceneRequest,
    "refine": RefineRequest,
}
"""Job kinds the engine runs, by the name the bridge protocol uses."""


def request_to_json(request: Request) -> tuple[dict[str, Any], list[bytes]]:
    """A request as JSON plus binary buffers (image, then mask file if any), for the bridge.

    Paths are read here, so the engine never needs to see the client's files.
    """
    kind = next(k for k, cls in REQUESTS.items() if isinstance(request, cls))
    job: dict[str, Any] = {"kind": kind}
    buffers = [_read_bytes(request.image, "image file")]
    for f in dataclasses.fields(request):
        value = getattr(request, f.name)
        if f.name == "image":
            continue
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            job[f.name] = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(value).items()}
        elif f.name == "mask" and value not in (MASK_NONE, MASK_AUTO):
            job[f.name] = {"buffer": len(buffers)}
            buffers.append(_read_bytes(value, "mask file"))
        else:
            job[f.name] = value
    return job, buffers


def request_from_json(job: Any, buffers: list[bytes]) -> Request:
    """The validated request a bridge message describes (InputError naming what is wrong)."""
    if not isinstance(job, dict) or not isinstance(job.get("kind"), str) or job["kind"] not in REQUESTS:
        raise InputError(
            f"unknown job kind {job.get('kind') if isinstance(job, dict) else job!r}",
            f"use one of: {', '.join(REQUESTS)}",
        )
    cls = REQUESTS[job["kind"]]
    if not buffers:
        raise InputError("the job carries no image", "send the image file's bytes as the first buffer")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {"image": buffers[0]}
    for name, value in job.items():
        if name == "kind":
            continue
        if name not in fields or name == "image":
            raise InputError(f"unknown job field {name!r}", f"known fields: {', '.join(sorted(fields))}")
        default = fields[name].default
        if dataclasses.is_dataclass(default):
            values[name] = _dataclass_from_json(type(default), value)
        elif isinstance(default, tuple):  # JSON arrays, nested or not; `validate` checks what they hold
            values[name] = _tuples(value)
        elif name == "mask" and isinstance(value, dict):
            index = value.get("buffer")
            if not isinstance(index, int) or not 0 < index < len(buffers):
                raise InputError("the mask refers to a missing buffer", "send the mask file as the second buffer")
            values[name] = buffers[index]
        elif name == "mask" and value not in (MASK_NONE, MASK_AUTO):
            # A path would be read from the engine's disk, not the client's: masks travel as buffers.
            raise InputError(
                f'mask must be "none", "auto" or {{"buffer": N}}, got {str(value)[:80]!r}',
                "send the mask file's bytes as a buffer",
            )
        else:
            values[name] = value
    return cls(**values).validate()


def _dataclass_from_json(cls: type[Any], data: Any) -> Any:
    """`cls` from a JSON object: unknown names rejected, lists made tuples, numbers type-checked."""
    if not isinstance(data, dict):
        raise InputError(f"{cls.__name__} must be a JSON object", "send the parameters as an object")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for name, value in data.items():
        if name not in fields:
            raise InputError(f"unknown parameter {name!r}", f"known parameters: {', '.join(sorted(fields))}")
        default = fields[name].default
        if isinstance(default, tuple):
            ok = isinstance(value, list) and all(type(v) is type(default[0]) for v in value)
            value = tuple(value) if ok else value
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            value = float(value) if ok else value
        else:
            ok = type(value) is type(default)
        if not ok:
            raise InputError(
                f"parameter {name!r} has the wrong type: {value!r}", f"send it like the default, {default!r}"
            )
        values[name] = value
    return cls(**values)


def _tuples(value: Any) -> Any:
    """JSON arrays (lists, at any depth) as tuples, as the request classes hold sequences."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _read_bytes(source: Source, what: str) -> bytes:
    return source if isinstance(source, bytes) else read_bounded(source, what, MAX_FILE_BYTES)
