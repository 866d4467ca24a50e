"""The `sketch-abstraction` command line. Options are parsed and validated here, once."""

from __future__ import annotations

import argparse
import os
import re
import sys
import traceback
from pathlib import Path

from engine import __version__
from engine.clip.models import MODEL_KINDS
from engine.errors import EngineError, InputError
from engine.jobs import MASK_AUTO, MASK_NONE, SketchRequest, run_sketch
from engine.methods.clipasso import ClipassoParams
from engine.progress import Progress
from engine.runtime import DEVICES, PRECISIONS, Runtime

_DEFAULTS = ClipassoParams()


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """Where and with which models the engine computes (shared by `sketch` and `serve`)."""
    group = parser.add_argument_group("engine")
    group.add_argument("--device", default="auto", choices=DEVICES, help="compute device (default: auto)")
    group.add_argument("--models", default="openai", choices=MODEL_KINDS,
                       help="CLIP weights: openai (real), random (real size, for timing), "
                            "tiny-random (tests; meaningless sketches)")
    group.add_argument("--weights-dir", help="folder holding RN101.pt and ViT-B-32.pt (offline use)")
    group.add_argument("--precision", default="auto", choices=PRECISIONS,
                       help="CLIP arithmetic (default: fp16 on CUDA, bf16 on CPUs that have it, else fp32)")


def add_sketch_options(parser: argparse.ArgumentParser) -> None:
    """The job options of an object sketch (shared by `sketch` and `submit`)."""
    group = parser.add_argument_group("sketch")
    group.add_argument("--strokes", type=_int_list, default=_DEFAULTS.strokes,
                       help="stroke count of each abstraction level, one SVG layer each (default: 32,16,8,4)")
    group.add_argument("--seeds", type=int, default=len(_DEFAULTS.seeds),
                       help="random starts per level; the best is kept (default: 3)")
    group.add_argument("--iterations", type=int, default=_DEFAULTS.iterations,
                       help="most optimisation steps; stops earlier on convergence (default: 2000)")
    group.add_argument("--control-points", type=int, default=_DEFAULTS.control_points, choices=(2, 3, 4),
                       help="points per stroke: 4 cubic, 3 quadratic, 2 straight (default: 4)")
    group.add_argument("--width", type=float,
                       help="stroke width in the image's pixels (default: 3 px at 224 px, scaled)")
    group.add_argument("--color", default="#000000", help="stroke colour in the SVG (default: black)")
    group.add_argument("--mask", default=MASK_NONE,
                       help="background removal: none (default), auto (U2-Net, needs the 'mask' "
                            "extra) or a mask image (white = object)")
    group.add_argument("--aug-bank", type=int, default=_DEFAULTS.aug_bank,
                       help="precomputed target augmentations; 0 recomputes them every step as the "
                            "official code (default: 128)")


def sketch_request(args: argparse.Namespace, image) -> SketchRequest:
    """Validated job from parsed options (raises InputError)."""
    if args.seeds < 1:
        raise InputError(f"--seeds must be at least 1, got {args.seeds}", "use --seeds 3 (the paper's)")
    if not re.fullmatch(r"#(?:[0-9a-fA-F]{3}){1,2}", args.color):
        raise InputError(f"--color must be a hex colour like #000000, got {args.color!r}", "try --color '#1a1a1a'")
    if args.width is not None and not 0 < args.width < 1000:
        raise InputError(f"--width must be a positive width in pixels, got {args.width}", "try --width 3")
    params = ClipassoParams(strokes=args.strokes, seeds=tuple(1000 * i for i in range(args.seeds)),
                            iterations=args.iterations, control_points=args.control_points,
                            aug_bank=args.aug_bank).validate()
    return SketchRequest(image=image, params=params, mask=args.mask, width=args.width, color=args.color)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sketch-abstraction",
        description="Line sketches of photos at several levels of abstraction (CLIPasso), as SVG layers.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    sketch = commands.add_parser("sketch", help="sketch an object photo at several abstraction levels",
                                 description="Sketch IMAGE with CLIPasso; one SVG layer per stroke count.")
    sketch.add_argument("image", help="PNG, JPEG, WebP, TIFF or BMP")
    sketch.add_argument("-o", "--output", help="SVG to write (default: IMAGE's name + .svg, here)")
    sketch.add_argument("--preview", help="also write a PNG preview of every level over the image")
    sketch.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_sketch_options(sketch)
    add_engine_options(sketch)
    sketch.set_defaults(run=_cmd_sketch)
    return parser


def writable_file(path: str | Path, option: str) -> Path:
    """`path` if a file can be written there (checked before any work, so no run is wasted)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"cannot write {path}: it is a folder", f"pass {option} with a file name")
    folder = path.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise InputError(f"cannot write {path}: folder {folder} does not exist or is not writable",
                         f"pass {option} with a path in a writable folder")
    return path


class _ProgressBar:
    """tqdm bar on stderr: iteration, ETA, loss and how many sketches are still optimising."""

    def __init__(self, quiet: bool):
        self.quiet, self.bar = quiet, None

    def __call__(self, p: Progress) -> None:
        if self.quiet:
            return
        if p.stage != "optimise":
            print(f"{p.stage}: {p.detail}", file=sys.stderr)
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=p.total, desc="optimise", unit="it", file=sys.stderr, dynamic_ncols=True)
        self.bar.update(p.iteration - self.bar.n)
        self.bar.set_postfix_str(f"loss {p.loss:.4g}, {p.detail}" if p.loss is not None else p.detail)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _cmd_sketch(args) -> int:
    from engine.svg import write_svg

    out = writable_file(args.output or Path(args.image).stem + ".svg", "-o")
    if args.preview:
        writable_file(args.preview, "--preview")
    request = sketch_request(args, args.image)
    runtime = Runtime.create(args.device, args.models, args.weights_dir, args.precision)
    bar = _ProgressBar(args.quiet)
    try:
        result = run_sketch(runtime, request, bar)
    finally:
        bar.close()
    write_svg(out, result.sketch)
    if args.preview:
        from engine.preview import write_preview

        write_preview(args.preview, request.image, result.sketch)
    if not args.quiet:
        for note in result.notes:
            print(f"note: {note}", file=sys.stderr)
        for level in result.levels:
            print(f"{level.strokes:>4} strokes: loss {level.eval_loss:.4g} (seed {level.seed}, "
                  f"best at iteration {level.best_iteration})", file=sys.stderr)
        print(f"wrote {out} ({result.iterations} iterations, {result.seconds:.1f} s on {runtime.device})",
              file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except EngineError as err:
        print(f"error: {err.message}", file=sys.stderr)
        if err.hint:
            print(f"  fix: {err.hint}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted; nothing was written", file=sys.stderr)
        return 130
    except Exception as err:  # a bug: say so plainly, with the traceback to report
        if _is_out_of_memory(err):
            print(f"error: out of memory on the device ({err})", file=sys.stderr)
            print("  fix: fewer levels or seeds, --device cpu, or close other GPU programs", file=sys.stderr)
            return 4
        traceback.print_exc()
        print("error: internal error (a bug); please report it with the traceback above", file=sys.stderr)
        return 1


def _is_out_of_memory(err: Exception) -> bool:
    import torch

    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


if __name__ == "__main__":
    sys.exit(main())
