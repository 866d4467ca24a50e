"""One engine per user: the runtime folder's lock file, held for the engine's lifetime."""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

from bridge import connection
from bridge.errors import EngineError


class AlreadyRunning(EngineError):
    code = "already_running"
    exit_code = connection.ALREADY_RUNNING_EXIT


def acquire_lock() -> TextIO:
    """Hold the runtime folder's lock file for the engine's lifetime: one engine per user. The file
    holds the engine's pid, so that clients can name it even without a connection file."""
    path = connection.runtime_dir() / connection.LOCK_FILE
    handle = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o600), "r+")
    for attempt in range(5):  # a client may hold it shared for an instant (connection.lock_holder)
        try:
            if sys.platform == "win32":
                import msvcrt

                msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError:
            if attempt == 4:
                handle.close()
                holder = connection.lock_holder()
                raise AlreadyRunning(
                    f"an engine is already running{f' (pid {holder})' if holder else ''}",
                    "use it (sketch-abstraction status), or stop it first with `sketch-abstraction stop`",
                ) from None
            time.sleep(0.05)
    handle.truncate(0)
    handle.write(str(os.getpid()))
    handle.flush()
    return handle
