"""Where a command writes: every output checked before any work (so that no run is wasted and no
input is overwritten), and a failure to write named with the option to change.

Torch-free, as engine.cli.options.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bridge.errors import InputError, OutputError
from bridge.params import MASK_AUTO, MASK_NONE


def writable_file(path: str | Path, option: str, inputs: dict[str, str | Path] | None = None) -> Path:
    """`path` if the output can be written there, checked before any work so that no run is wasted:
    not a folder, a device or a pipe, in a writable folder, and none of `inputs` (by role: "image",
    "mask"), however either is spelled (links and relative paths resolved)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"cannot write {path}: it is a folder", f"pass {option} with a file name")
    if path.exists() and not path.resolve().is_file():
        raise InputError(
            f"cannot write {path}: it is not a regular file (a device, pipe or socket)",
            f"pass {option} with a file name",
        )
    folder = path.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise InputError(
            f"cannot write {path}: folder {folder} does not exist or is not writable",
            f"pass {option} with a path in a writable folder",
        )
    for role, source in (inputs or {}).items():
        if same_file(path, source):
            raise InputError(
                f"{option} {path} is the input {role}: writing there would replace it",
                f"pass {option} with another file name, e.g. {Path(source).stem}.svg",
            )
    return path


@contextmanager
def writing(path: str | Path, option: str) -> Iterator[None]:
    """Turn a failure to write the output `path` (disk full, ...) into an OutputError."""
    try:
        yield
    except OSError as err:
        raise OutputError(
            f"cannot write {path}: {err.strerror or err}", f"free some disk space, or pass {option} in another folder"
        ) from None


def distinct_outputs(outputs: dict[str, str | Path]) -> None:
    """InputError when two outputs (by option) are the same file: one would overwrite the other."""
    named = list(outputs.items())
    for i, (option, path) in enumerate(named):
        for other, other_path in named[i + 1 :]:
            if same_file(path, other_path):
                raise InputError(f"{option} and {other} are the same file, {path}", "give each output its own name")


def mask_input(mask: str) -> dict[str, str | Path]:
    """The mask as an input file, when it is one (not "none" or "auto")."""
    return {} if mask in (MASK_NONE, MASK_AUTO) else {"mask": mask}


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether `a` and `b` name one file: the same resolved path, or hard links of one existing file."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False
