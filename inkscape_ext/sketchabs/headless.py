"""Inkscape without a window (`inkscape --batch-process`): no message may wait for a click.

Inkscape 1.2 turns any byte an effect writes on stderr into a modal "received additional data"
dialog, also in a batch run, where nobody can close it: the run hangs. It does not tell the effect
that it runs in batch, and the effect's parent process is not Inkscape (it is spawned detached), so
the effect finds the Inkscape process that reads its output (the other end of its stdout pipe, Linux:
/proc) and looks at its command line. In a batch run the effect's messages go to that Inkscape's own
stderr (the terminal or log of whoever ran the batch) and the extension opens no window of its own.
Elsewhere (other systems, a normal session) nothing changes.
"""

from __future__ import annotations

import os
import sys

_batch: bool | None = None


def inkscape_batch_pid() -> int | None:
    """The id of the Inkscape process that reads this effect's output, if it runs --batch-process."""
    try:
        ours = os.readlink("/proc/self/fd/1")
        entries = os.listdir("/proc")
    except OSError:
        return None  # not Linux, or no /proc
    if not ours.startswith("pipe:"):
        return None
    for entry in entries:
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/comm", encoding="utf-8") as comm:
                if "inkscape" not in comm.read().lower():
                    continue
            fds = os.listdir(f"/proc/{entry}/fd")
            if not any(os.readlink(f"/proc/{entry}/fd/{fd}") == ours for fd in fds):
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                return int(entry) if b"--batch-process" in cmdline.read().split(b"\0") else None
        except OSError:
            continue  # ended meanwhile, or another user's
    return None


def in_batch() -> bool:
    """Whether this effect runs inside `inkscape --batch-process` (looked up once)."""
    global _batch
    if _batch is None:
        _batch = inkscape_batch_pid() is not None
    return _batch


def route_stderr() -> None:
    """In a batch run, send everything the effect says on stderr to Inkscape's own stderr instead of
    the pipe Inkscape would show as a dialog. Call before the effect runs."""
    global _batch
    pid = inkscape_batch_pid()
    _batch = pid is not None
    if pid is None:
        return
    try:
        target = os.open(f"/proc/{pid}/fd/2", os.O_WRONLY | os.O_APPEND)
    except OSError:
        target = os.open(os.devnull, os.O_WRONLY)  # still never the dialog
    sys.stderr.flush()
    os.dup2(target, 2)
    os.close(target)
