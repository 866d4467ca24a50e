"""Jobs as users ask for them: an image file in, a layered Sketch out. The CLI and the bridge call this.

Everything file-shaped happens here (loading, masking, the map back to the photo's pixels); the
methods only ever see tensors on the 224 x 224 canvas.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from bridge.params import MASK_AUTO, MASK_NONE, RefineRequest, SceneRequest, SketchRequest, canvas_half_width
from engine.inking import ink_if_asked
from engine.io.automask import auto_mask
from engine.io.image import load_image, load_mask
from engine.methods.clipascene import BACKGROUND, OBJECT, ColumnResult, SceneTarget, optimise_scene
from engine.methods.clipasso import LevelResult, optimise
from engine.methods.importance import by_importance
from engine.methods.refine import RefineRun, refine
from engine.preprocess import CanvasMap, prepare_target
from engine.preview import LivePreview
from engine.progress import Progress, ProgressCallback, silent
from engine.runtime import Runtime
from engine.scene.combine import clip_strokes, matrix_sketch, part_regions, to_scene
from engine.scene.inpaint import filler
from engine.scene.split import ObjectFrame, split_scene
from engine.scene.weights import require_scene_weights
from engine.strokes import Sketch, StrokeLayer, elevate
from engine.svg import sketch_to_svg

PREVIEW_SHARE = 0.1  # live previews take at most this share of a job's time: a slow CPU draws them less often


@dataclass
class SketchResult:
    sketch: Sketch  # one layer per level, in the photo's pixel space; the first level visible
    levels: list[LevelResult]  # canvas-space details: losses, seeds, iterations
    canvas_map: CanvasMap
    iterations: int
    seconds: float
    notes: list[str] = field(default_factory=list)  # things the user should know (mask resized...)


def resolve_mask(spec, image: Image.Image, runtime: Runtime) -> tuple[np.ndarray | None, list[str]]:
    """The object mask (H, W) bool for `image`, or None; plus notes for the user."""
    if isinstance(spec, str) and spec == MASK_NONE:
        return None, []
    if isinstance(spec, str) and spec == MASK_AUTO:
        return auto_mask(image, runtime.models, runtime.weights_dir), ["object found with the automatic U2-Net mask"]
    mask, note = load_mask(spec, image.size)
    return mask, [note] if note else []


def run_sketch(
    runtime: Runtime, request: SketchRequest, progress: ProgressCallback = silent, preview_every: float | None = None
) -> SketchResult:
    """Load, mask, optimise every level, and map the strokes back onto the photo; with `preview_every`
    (seconds), progress carries a PNG of the sketch so far at most that often."""
    progress(Progress("load", 0, 1, detail="reading the image"))
    image = load_image(request.image)
    mask, notes = resolve_mask(request.mask, image, runtime)
    target, cmap = prepare_target(image, mask)
    params = request.params
    if request.width is not None:  # keep the look the user asked for at the photo's scale
        params = dataclasses.replace(params, half_width=canvas_half_width(request.width, cmap.scale)).validate()
    width = 2 * params.half_width * cmap.scale

    def sketch_of(levels: list[torch.Tensor], importance: list[tuple[float, ...]]) -> Sketch:
        layers = tuple(
            StrokeLayer(
                label=f"{n} strokes",
                points=cmap.to_source(_numpy(points)),
                width=width,
                color=request.color,
                visible=i == 0,
                importance=scores,
            )
            for i, (n, points, scores) in enumerate(zip(params.strokes, levels, importance, strict=True))
        )
        return Sketch(width=image.width, height=image.height, layers=layers)

    def snapshot_svg(levels: list[torch.Tensor]) -> bytes:  # an early look: pen strokes, not yet ranked or inked
        return sketch_to_svg(sketch_of(levels, [()] * len(levels)))

    progress = with_previews(progress, preview_every, image, sketch_layer(cmap, width), snapshot_svg)
    run = optimise(runtime, target, params, progress)
    sketch = sketch_of([lv.points for lv in run.levels], [tuple(lv.importance.tolist()) for lv in run.levels])
    sketch, inked = ink_if_asked(
        runtime, request.style, sketch, target, cmap, params.iterations, params.seeds[0], progress
    )
    return SketchResult(sketch, run.levels, cmap, run.iterations, run.seconds, notes + inked)


def with_previews(
    progress: ProgressCallback,
    every_s: float | None,
    image: Image.Image,
    draw: Callable[..., StrokeLayer],
    snapshot_svg: Callable[[list[torch.Tensor]], bytes] | None = None,
) -> ProgressCallback:
    """`progress`, with a PNG (`Progress.preview`) of the reported strokes, placed on `image` by
    `draw`, at most every `every_s` (None: never) and less often where drawing one would take more
    than PREVIEW_SHARE of the time (the job waits while it is drawn); with `snapshot_svg`, the
    method's `Progress.snapshot` becomes one giving that SVG of every level's strokes so far (None
    where the job has none). The strokes themselves never leave the job: they are tensors the method
    keeps changing (and would cross processes with Ray workers)."""
    live = LivePreview(image) if every_s is not None else None
    last, cost = -math.inf, 0.0  # when the last preview was started, and what it took, s

    def svg_of(levels: Callable[[], Any], to_svg: Callable[..., bytes]) -> Callable[[], bytes | None]:
        return lambda: None if (strokes := levels()) is None else to_svg(strokes)

    def report(p: Progress) -> None:
        nonlocal last, cost
        preview = None
        due = time.monotonic() - last >= max(every_s or 0.0, cost / PREVIEW_SHARE)
        if live is not None and p.strokes is not None and due:
            last = time.monotonic()
            preview = live.png(draw(p.strokes))
            cost = time.monotonic() - last
        snapshot = svg_of(p.snapshot, snapshot_svg) if snapshot_svg is not None and p.snapshot is not None else None
        progress(dataclasses.replace(p, strokes=None, preview=preview, snapshot=snapshot))

    return report


def _numpy(strokes: torch.Tensor) -> np.ndarray:
    return strokes.detach().cpu().numpy().astype(np.float64)


def sketch_layer(cmap: CanvasMap, width: float) -> Callable[[torch.Tensor], StrokeLayer]:
    """`with_previews`' drawing for an object sketch's strokes (n, k, 2) canvas px."""
    return lambda strokes: StrokeLayer("preview", cmap.to_source(_numpy(strokes)), width)


def scene_layer(
    cmap: CanvasMap, frame: ObjectFrame, mask: np.ndarray | None, width: float
) -> Callable[[dict[str, torch.Tensor]], StrokeLayer]:
    """`with_previews`' drawing for a scene's {part: strokes (n, k, 2) canvas px}: each part where the
    SVG puts it (the object through its frame; the background off the object), the object on top."""
    regions = part_regions(cmap, mask, width)

    def draw(strokes: dict[str, torch.Tensor]) -> StrokeLayer:
        parts = tuple(
            StrokeLayer(part, clip_strokes(to_scene(_numpy(strokes[part]), part, cmap, frame), regions[part])[0], width)
            for part in (BACKGROUND, OBJECT)
            if part in strokes
        )
        return StrokeLayer("preview", width=width, sublayers=parts)

    return draw


@dataclass
class SceneResult:
    sketch: Sketch  # a layer per fidelity column > a layer per cell > "Background", "Object"; one cell visible
    matrix: dict[tuple[int, int], StrokeLayer]  # the same cells by (fidelity layer, row), photo pixels
    columns: list[ColumnResult]  # canvas-space details per part x layer: strokes, losses, seeds, ratios
    canvas_map: CanvasMap
    iterations: int
    seconds: float
    notes: list[str] = field(default_factory=list)


def run_scene(
    runtime: Runtime, request: SceneRequest, progress: ProgressCallback = silent, preview_every: float | None = None
) -> SceneResult:
    """Load, split into object and background, run the matrix for both, combine in the photo's pixels.

    Without a mask (`none`) the whole image is one object; a mask that leaves (nearly) no background
    gives an object-only matrix; an empty mask is an InputError (raised while reading it). With
    `preview_every` (seconds), progress carries a PNG at most that often of the row being optimised
    in the first fidelity column: object and background as the SVG will place them.
    """
    require_scene_weights(runtime, request)
    progress(Progress("load", 0, 1, detail="reading the image"))
    image = load_image(request.image)
    mask, notes = resolve_mask(request.mask, image, runtime)
    progress(Progress("split", 0, 1, detail="object and background" if mask is not None else "no mask: object only"))
    fill = filler(request.inpaint, runtime.models, runtime.weights_dir, runtime.device)
    split = split_scene(image, mask, fill)
    notes += split.notes
    object_target, cmap = prepare_target(split.object_image, None)
    targets = [SceneTarget(OBJECT, object_target)]
    if split.background_image is not None:
        targets.append(SceneTarget(BACKGROUND, prepare_target(split.background_image, None)[0]))
    params = request.params
    if request.width is not None:  # keep the look the user asked for at the photo's scale
        params = dataclasses.replace(params, half_width=canvas_half_width(request.width, cmap.scale)).validate()
    width = 2 * params.half_width * cmap.scale
    progress = with_previews(progress, preview_every, image, scene_layer(cmap, split.frame, split.mask, width))
    run = optimise_scene(runtime, targets, params, progress)
    sketch, matrix = matrix_sketch(
        run, cmap, split.frame, split.mask, request.rows, params.levels, width, request.color
    )
    whole, whole_map = prepare_target(image, None)  # ink: the CLIPasso loss of the whole photo (docs/method.md#ink)
    sketch, inked = ink_if_asked(
        runtime, request.style, sketch, whole, whole_map, params.iterations, params.seeds[0], progress
    )
    return SceneResult(sketch, matrix, run.columns, cmap, run.iterations, run.seconds, notes + inked)


@dataclass
class RefineResult:
    sketch: Sketch  # one layer: the result strokes in the photo's pixels, each with its source and importance
    run: RefineRun  # canvas-space details: losses, iterations
    canvas_map: CanvasMap
    seconds: float
    notes: list[str] = field(default_factory=list)


def run_refine(
    runtime: Runtime, request: RefineRequest, progress: ProgressCallback = silent, preview_every: float | None = None
) -> RefineResult:
    """Load and mask the photo, map the given strokes onto the canvas, refine them, map them back; with
    `preview_every` (seconds), progress carries a PNG of the sketch so far, as for `run_sketch`.

    Strokes of fewer control points are raised to the most any has (exact degree elevation). The
    sketch's strokes come most important first; a locked stroke is written as given (elevated).
    """
    progress(Progress("load", 0, 1, detail="reading the image"))
    image = load_image(request.image)
    mask, notes = resolve_mask(request.mask, image, runtime)
    target, cmap = prepare_target(image, mask)
    k = max(len(stroke) // 2 for stroke in request.strokes)
    given = np.stack([elevate(np.reshape(stroke, (-1, 2)).astype(np.float64), k) for stroke in request.strokes])
    half_width = torch.tensor(request.widths, dtype=torch.float32) / (2 * cmap.scale)  # (n,) canvas px
    added = canvas_half_width(request.width, cmap.scale) if request.width is not None else float(half_width.median())
    progress = with_previews(
        progress, preview_every, image, sketch_layer(cmap, 2 * float(half_width.median()) * cmap.scale)
    )
    run = refine(
        runtime,
        target,
        torch.from_numpy(cmap.to_canvas(given)).float(),
        half_width,
        torch.tensor(request.locked),
        request.params,
        added,
        progress,
    )
    ranked = len(run.importance) > 0
    order = by_importance(run.importance) if ranked else torch.arange(len(run.points))
    points = cmap.to_source(run.points[order].numpy().astype(np.float64))  # (m, k, 2) photo px
    sources = run.sources[order].numpy()
    for i, source in enumerate(sources):
        if source >= 0 and request.locked[source]:
            points[i] = given[source]  # as given, not through the canvas and back
    layer = StrokeLayer(
        label=f"{len(points)} strokes",
        points=points,
        width=2 * added * cmap.scale,
        color=request.color,
        importance=tuple(run.importance[order].tolist()) if ranked else (),
        sources=tuple(sources.tolist()),
    )
    sketch = Sketch(width=image.width, height=image.height, layers=(layer,))
    sketch, inked = ink_if_asked(
        runtime, request.style, sketch, target, cmap, request.params.iterations, request.params.seed, progress
    )
    return RefineResult(sketch, run, cmap, run.seconds, notes + inked)


@dataclass
class JobOutput:
    """A finished job as the engine service stores and sends it."""

    svg: bytes
    seconds: float
    notes: list[str]


JOBS: dict[str, Callable[..., SketchResult | SceneResult | RefineResult]] = {
    "sketch": run_sketch,
    "scene": run_scene,
    "refine": run_refine,
}
"""The job functions by the kind names of bridge.params.REQUESTS."""


def run_job(
    runtime: Runtime, kind: str, request, progress: ProgressCallback = silent, preview_every: float | None = None
) -> JobOutput:
    """One job of the engine service (engine.service.server's `run_job`, with the runtime bound)."""
    try:
        result = JOBS[kind](runtime, request, progress, preview_every)
        return JobOutput(sketch_to_svg(result.sketch), result.seconds, result.notes)
    finally:
        runtime.release_memory()
