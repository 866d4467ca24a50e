"""Reading a user's file safely: regular files only, and never more than a bound.

A path can name a device (/dev/zero never ends), a FIFO (opening it waits for a writer forever) or
a socket. Each is refused with an InputError before any byte is read; a FIFO is opened without
waiting, so that it can be refused at all.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from bridge.errors import InputError

_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # POSIX: open a FIFO without waiting for its writer
_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation


@contextmanager
def open_regular(path: str | os.PathLike[str], what: str) -> Iterator[BinaryIO]:
    """`path` opened for binary reading; InputError naming `what` if it is missing, unreadable, a
    folder, or not a regular file."""
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | _NONBLOCK | _BINARY)
    except FileNotFoundError:
        raise InputError(f"{what} not found: {name}", "check the path and its spelling") from None
    except OSError as err:
        raise InputError(f"cannot read {what} {name}: {err.strerror}", "check the path and its permissions") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise InputError(f"{what} {name} is a folder, not a file", "pass a file inside it")
        raise InputError(
            f"{what} {name} is not a regular file (a device, pipe or socket)", "save the data to a file first"
        )
    if _NONBLOCK:
        os.set_blocking(fd, True)
    with os.fdopen(fd, "rb") as f:
        yield f


def read_bounded(path: str | os.PathLike[str], what: str, limit: int) -> bytes:
    """The bytes of the regular file `path`, at most `limit` of them (InputError when it holds more)."""
    with open_regular(path, what) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise InputError(
            f"{what} {os.fspath(path)} is larger than {limit / 2**20:g} MiB",
            "downscale or re-encode it (sketches are drawn at 224 x 224)",
        )
    return data
