"""The `sketch-abstraction` command line: one module per command, options validated once, here.

Importing this package does not import torch; only the commands that compute do.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

from bridge.errors import DeviceError, EngineError
from engine import __version__
from engine.budget import OUT_OF_MEMORY_HINT, is_out_of_memory
from engine.cli import animate, batch, cancel, fetch, keys, refine, scene, serve, sketch, status, stop, submit

# Each module's `register(subparsers)` adds its command; `--help` lists them in this order.
COMMANDS = (sketch, scene, refine, animate, serve, submit, fetch, cancel, status, stop, batch, keys)


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
        code = args.run(args)
        sys.stdout.flush()  # here, so that a closed pipe is handled below and not at exit
        return code
    except BrokenPipeError:  # the reader went away (`status | head -1`): it has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
        return 128 + 13  # as a shell reports a command ended by SIGPIPE
    except EngineError as err:
        print(f"error: {err.message}", file=sys.stderr)
        if err.hint:
            print(f"  fix: {err.hint}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted; nothing was written", file=sys.stderr)
        return 130
    except Exception as err:  # a bug: say so plainly, with the traceback to report
        if is_out_of_memory(err):
            print(
                f"error: out of memory ({str(err).splitlines()[0] if str(err) else type(err).__name__})",
                file=sys.stderr,
            )
            print(f"  fix: {OUT_OF_MEMORY_HINT}", file=sys.stderr)
            return DeviceError.exit_code
        traceback.print_exc()
        print("error: internal error (a bug); please report it with the traceback above", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
