"""`sketch-abstraction animate`: a sketch SVG drawn stroke by stroke, most important first, as an
animated SVG, a GIF or an MP4 (engine/motion)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bridge.errors import InputError
from engine.cli.outputs import distinct_outputs, writable_file, writing

FORMATS = (".svg", ".gif", ".mp4")


def register(commands) -> None:
    from engine.motion.plan import BACKGROUNDS, ORDERS, PACES, AnimateParams

    defaults = AnimateParams()
    animate = commands.add_parser(
        "animate",
        help="draw a sketch stroke by stroke: animated SVG, GIF or MP4",
        description="Animate a sketch SVG: its strokes drawn one by one, most important first "
        "(sketchabs:importance). The output's suffix picks the format: .svg (CSS, plays in browsers, "
        "every stroke stays a path), .gif, or .mp4 (needs the video extra).",
    )
    animate.add_argument("sketch", help="an SVG written by sketch-abstraction (sketch, scene, refine) or Inkscape")
    animate.add_argument(
        "-o",
        "--output",
        action="append",
        help="file to write, .svg, .gif or .mp4; repeat for several (default: SKETCH's name + -animated.svg)",
    )
    animate.add_argument("--layer", help="the layer to animate, by label or id (default: every visible layer)")
    animate.add_argument(
        "--duration", type=float, default=defaults.duration, help=f"seconds of drawing (default: {defaults.duration})"
    )
    animate.add_argument(
        "--pace",
        choices=PACES,
        default=defaults.pace,
        help="length: one pen speed, a stroke's time proportional to its length (default); even: every stroke "
        "the same time (its speed proportional to its length)",
    )
    animate.add_argument(
        "--order",
        choices=ORDERS,
        default=defaults.order,
        help="importance: a scene's object strokes first, then the rest, each most important first (default); "
        "layers: the layer's sublayers one after another (a scene: column by column), each by importance",
    )
    animate.add_argument(
        "--background",
        choices=BACKGROUNDS,
        default=defaults.background,
        help="none (transparent SVG; white in GIF and MP4, default), white, or photo (the document's photo, faded)",
    )
    animate.add_argument("--fps", type=int, default=defaults.fps, help=f"GIF/MP4 frames per second ({defaults.fps})")
    animate.add_argument(
        "--hold", type=float, default=defaults.hold, help=f"seconds the finished sketch stays ({defaults.hold})"
    )
    animate.add_argument(
        "--size", type=int, default=defaults.size, help=f"GIF/MP4 longest side at most, px ({defaults.size})"
    )
    animate.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    animate.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from bridge.atomic import write_atomic
    from engine.motion.frames import VIDEO_HINT, write_gif, write_mp4
    from engine.motion.plan import AnimateParams, plan
    from engine.motion.svg import animated_svg

    source = Path(args.sketch)
    outputs = [Path(o) for o in (args.output or [source.stem + "-animated.svg"])]
    for out in outputs:
        if out.suffix.lower() not in FORMATS:
            raise InputError(f"-o {out}: unknown format {out.suffix or '(no suffix)'}", "end it in .svg, .gif or .mp4")
        writable_file(out, "-o", {"sketch": source})
    distinct_outputs({f"-o {out}": out for out in outputs})
    if any(out.suffix.lower() == ".mp4" for out in outputs):
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise InputError("MP4 needs ffmpeg through the imageio-ffmpeg package, not installed", VIDEO_HINT) from None
    try:
        data = source.read_bytes()
    except OSError as err:
        raise InputError(f"cannot read {source}: {err.strerror or err}", "give the path of a sketch SVG") from None
    params = AnimateParams(
        duration=args.duration,
        pace=args.pace,
        order=args.order,
        background=args.background,
        fps=args.fps,
        hold=args.hold,
        size=args.size,
    )
    animation = plan(data, source, args.layer, params)
    for out in outputs:
        with writing(out, "-o"):
            kind = out.suffix.lower()
            if kind == ".svg":
                write_atomic(out, animated_svg(animation, out))
            elif kind == ".gif":
                write_gif(out, animation)
            else:
                write_mp4(out, animation)
        if not args.quiet:
            print(f"wrote {out} ({len(animation.strokes)} strokes, {params.duration:g} s)", file=sys.stderr)
    return 0
