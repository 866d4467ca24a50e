"""The `sketch-abstraction` command line: one module per command, options validated once, here.

Importing this package does not import torch; only the commands that compute do.
"""

from __future__ import annotations

import argparse
import sys
import traceback

from bridge.errors import EngineError
from engine import __version__
from engine.cli import remote, scene, sketch

COMMANDS = (sketch, scene, remote)  # each module's `register(subparsers)` adds its command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sketch-abstraction",
        description="Line sketches of photos at several levels of abstraction (CLIPasso, CLIPascene), as SVG layers.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # `submit --scene` re-reads its job options with the `scene` command's parser
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
    if "torch" not in sys.modules:
        return False
    import torch

    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


if __name__ == "__main__":
    sys.exit(main())
