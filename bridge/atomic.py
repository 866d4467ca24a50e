"""Atomic file writes: a result file either appears whole or not at all."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from bridge.errors import InputError


def write_atomic(path: str | os.PathLike[str], data: bytes, mode: int | None = None) -> Path:
    """Write `data` to `path` through a temp file in the same folder and an atomic rename.

    A symlink is written through: its target is replaced, the link stays. Anything else that is not
    a regular file (a device, a pipe, a socket) is refused with an InputError, never swapped for a
    file. `mode` defaults to an ordinary user file's (0666 less the umask); private files pass 0o600,
    which the file has from its creation on, never wider. Returns `path`.
    """
    target = Path(os.path.realpath(path))
    try:
        existing = os.stat(target).st_mode
    except FileNotFoundError:
        existing = None
    if existing is not None and not stat.S_ISREG(existing):
        kind = "a folder" if stat.S_ISDIR(existing) else "not a regular file (a device, pipe or socket)"
        raise InputError(f"cannot write {os.fspath(path)}: it is {kind}", "choose a file name for the output")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask() if mode is None else mode)  # mkstemp makes 0600; chmod: Windows too
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
