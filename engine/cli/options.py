"""Command-line options shared by several commands, and their translation into validated requests.

Torch-free, so that the bridge commands (`submit`, `status`, `stop`) start instantly. Where the
outputs go is checked in engine.cli.outputs.
"""

from __future__ import annotations

import argparse

from bridge.errors import InputError
from bridge.params import (
    AUG_BANK_AUTO,
    DEVICES,
    INPAINT_METHODS,
    MASK_NONE,
    MODEL_KINDS,
    PAPER_GRID_ROWS,
    PRECISIONS,
    RENDERERS,
    STYLE_PEN,
    STYLES,
    ClipassoParams,
    RefineParams,
    RefineRequest,
    SceneParams,
    SceneRequest,
    SketchRequest,
)
from bridge.seeds import job_seeds

_SKETCH = ClipassoParams()
_SCENE = SceneParams()
_SCENE_REQUEST = SceneRequest(image=b"")
_REFINE = RefineParams()


def int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """Where and with which models the engine computes (shared by `sketch`, `scene` and `serve`)."""
    group = parser.add_argument_group("engine")
    group.add_argument("--device", default="auto", choices=DEVICES, help="compute device (default: auto)")
    group.add_argument(
        "--models",
        default="openai",
        choices=MODEL_KINDS,
        help="CLIP weights: openai (real), random (real size, for timing), tiny-random (tests; meaningless sketches)",
    )
    group.add_argument(
        "--weights-dir",
        help="folder holding RN101.pt and ViT-B-32.pt, and for scenes u2net.onnx and big-lama.pt (offline use)",
    )
    group.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="CLIP arithmetic (default auto: fp16 on CUDA, fp32 elsewhere, as the official code); bf16 is "
        "faster on CPUs with native bf16 but bends the gradient the sketch follows",
    )
    group.add_argument(
        "--renderer",
        default="ours",
        choices=RENDERERS,
        help="differentiable rasteriser: ours (pure PyTorch, default) or diffvg (the official "
        "code's, for parity runs; needs pydiffvg installed)",
    )


def parse_address(text: str, option: str) -> tuple[str, int]:
    """HOST:PORT -> (host, port); InputError naming `option` otherwise."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or any(c.isspace() for c in host):
        raise InputError(f"{option} {text!r} is not HOST:PORT", f"e.g. {option} 0.0.0.0:5555 (a port from 1 to 65535)")
    return host, int(port)


def engine_settings(args: argparse.Namespace) -> dict:
    """The engine options as `Runtime.create` and `bridge.launcher.engine_command` take them."""
    return {
        "device": args.device,
        "models": args.models,
        "weights_dir": args.weights_dir,
        "precision": args.precision,
        "renderer": args.renderer,
    }


def add_sketch_options(parser: argparse.ArgumentParser) -> None:
    """The job options of an object sketch (shared by `sketch` and `submit`)."""
    group = parser.add_argument_group("sketch")
    group.add_argument(
        "--strokes",
        type=int_list,
        default=_SKETCH.strokes,
        help="stroke count of each abstraction level, one SVG layer each (default: 32,16,8,4)",
    )
    group.add_argument(
        "--seeds", type=int, default=len(_SKETCH.seeds), help="random starts per level; the best is kept (default: 3)"
    )
    group.add_argument(
        "--iterations",
        type=int,
        default=_SKETCH.iterations,
        help="most optimisation steps; stops earlier on convergence (default: 2000)",
    )
    group.add_argument(
        "--converge",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="stop a level once its eval loss changes by at most 1e-5 twice in a row, the paper's rule "
        "(default); --no-converge runs every iteration",
    )
    group.add_argument(
        "--control-points",
        type=int,
        default=_SKETCH.control_points,
        choices=(2, 3, 4),
        help="points per stroke: 4 cubic, 3 quadratic, 2 straight (default: 4)",
    )
    group.add_argument(
        "--mask",
        default=MASK_NONE,
        help="background removal: none (default), auto (U2-Net, needs the 'mask' "
        "extra) or a mask image (white = object)",
    )
    _add_look_and_bank_options(group, _SKETCH.aug_bank)


def _add_look_and_bank_options(group, aug_bank: int) -> None:
    """Stroke width and colour in the SVG, and the augmentation bank: the same for both methods."""
    group.add_argument(
        "--width", type=float, help="stroke width in the image's pixels (default: 3 px at 224 px, scaled)"
    )
    group.add_argument("--color", default="#000000", help="stroke colour in the SVG (default: black)")
    shown = "-1, auto: 0 on a GPU, 128 on a CPU" if aug_bank == AUG_BANK_AUTO else aug_bank
    group.add_argument(
        "--style",
        default=STYLE_PEN,
        choices=STYLES,
        help="pen: one width for every stroke (default); ink: a width per control point, optimised after "
        "the strokes, written as Inkscape PowerStroke paths (centre line and widths stay editable)",
    )
    group.add_argument(
        "--aug-bank",
        type=int,
        default=aug_bank,
        help=f"precomputed target augmentations; 0 recomputes them every step as the official code (default: {shown})",
    )


def sketch_request(args: argparse.Namespace, image) -> SketchRequest:
    """Validated job from parsed options (raises InputError)."""
    params = ClipassoParams(
        strokes=args.strokes,
        seeds=job_seeds(args.seeds),
        iterations=args.iterations,
        control_points=args.control_points,
        aug_bank=args.aug_bank,
        min_delta=_SKETCH.min_delta if args.converge else 0.0,  # 0: only an unchanged loss would stop it
    )
    return SketchRequest(
        image=image, params=params, mask=args.mask, width=args.width, color=args.color, style=args.style
    ).validate()


def add_scene_options(parser: argparse.ArgumentParser) -> None:
    """The job options of a scene sketch (shared by `scene` and `submit --scene`)."""
    group = parser.add_argument_group("scene")
    group.add_argument(
        "--mask",
        default=_SCENE_REQUEST.mask,
        help="object mask: auto (default: U2-Net finds the object, as the paper), a mask image (white = "
        "object), or none (the whole image sketched as one object with the object settings and no "
        "background layer: NOT the paper's method)",
    )
    group.add_argument(
        "--inpaint",
        default=_SCENE_REQUEST.inpaint,
        choices=INPAINT_METHODS,
        help="how the background is filled where the object was: lama (default, the paper's; needs "
        "big-lama.pt, downloaded once) or telea (OpenCV, no weights, leaves a smeared ghost of the object)",
    )
    group.add_argument(
        "--layers",
        type=int_list,
        default=_SCENE.layers,
        help="fidelity columns, one per CLIP layer: ViT-B/32 layer 0 (closest to the photo) to 11 (most "
        "abstract); low layers follow the photo's shapes, high layers keep its meaning with looser lines "
        "(default: 2,8,11)",
    )
    group.add_argument(
        "--levels",
        type=int,
        default=_SCENE.levels,
        help="simplified rows below the fidelity sketch; the matrix has LEVELS + 1 rows (default: 8)",
    )
    group.add_argument(
        "--strokes",
        type=int,
        default=_SCENE.strokes,
        help="strokes of the fidelity sketch; simpler rows keep fewer (default: 64)",
    )
    group.add_argument(
        "--seeds", type=int, default=len(_SCENE.seeds), help="random starts per stage; the best is kept (default: 2)"
    )
    group.add_argument(
        "--iterations",
        type=int,
        default=_SCENE.iterations,
        help="cap on every stage's iterations, for quick runs (default: none: 1500 "
        "background, 1000 or 600 object, 400 per simplified row)",
    )
    group.add_argument(
        "--paper-grid",
        action="store_true",
        help=f"write only rows {','.join(map(str, PAPER_GRID_ROWS))} (the paper's 4 x 4 figures)",
    )
    _add_look_and_bank_options(group, _SCENE.aug_bank)


def scene_request(args: argparse.Namespace, image) -> SceneRequest:
    """Validated scene job from parsed options (raises InputError)."""
    if args.iterations < 0:
        raise InputError(f"--iterations must be 0 (no cap) or more, got {args.iterations}", "try --iterations 100")
    params = SceneParams(
        layers=args.layers,
        levels=args.levels,
        strokes=args.strokes,
        seeds=job_seeds(args.seeds),
        iterations=args.iterations,
        aug_bank=args.aug_bank,
    )
    return SceneRequest(
        image=image,
        params=params,
        mask=args.mask,
        inpaint=args.inpaint,
        width=args.width,
        color=args.color,
        paper_grid=args.paper_grid,
        style=args.style,
    ).validate()


def add_refine_options(parser: argparse.ArgumentParser) -> None:
    """The job options of a refinement (`refine`)."""
    group = parser.add_argument_group("refine")
    group.add_argument(
        "--iterations",
        type=int,
        default=_REFINE.iterations,
        help=f"most optimisation steps: a refinement, not a fresh run (default: {_REFINE.iterations})",
    )
    change = group.add_mutually_exclusive_group()
    change.add_argument(
        "--add",
        type=int,
        default=0,
        metavar="N",
        help="add N strokes, started on salient edges the sketch does not cover yet",
    )
    change.add_argument(
        "--simplify",
        type=int,
        default=0,
        metavar="N",
        help="keep N strokes: drop the least important unlocked ones, then re-optimise the rest",
    )
    group.add_argument("--seed", type=int, default=_REFINE.seed, help="draws added strokes and augmentations")
    group.add_argument(
        "--mask",
        default=MASK_NONE,
        help="background removal, as for `sketch`: none (default), auto or a mask image (white = object)",
    )
    _add_look_and_bank_options(group, _REFINE.aug_bank)


def refine_request(
    args: argparse.Namespace,
    image,
    strokes: tuple[tuple[float, ...], ...],
    locked: tuple[bool, ...],
    widths: tuple[float, ...],
) -> RefineRequest:
    """Validated refine job from parsed options and a layer's strokes in photo px (raises InputError)."""
    params = RefineParams(
        iterations=args.iterations, add=args.add, simplify=args.simplify, seed=args.seed, aug_bank=args.aug_bank
    )
    return RefineRequest(
        image=image,
        strokes=strokes,
        locked=locked,
        widths=widths,
        params=params,
        mask=args.mask,
        width=args.width,
        color=args.color,
        style=args.style,
    ).validate()
