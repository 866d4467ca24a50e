"""Atomic file writes: a result file either appears whole or not at all."""

from __future__ import annotations

import os
import re
import secrets
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from bridge.errors import InputError


def write_atomic(path: str | os.PathLike[str], data: bytes, mode: int | None = None) -> Path:
    """Write `data` to `path` through a temp file in `path`'s folder, renamed over the name as given.

    Where the system allows (Linux's O_TMPFILE), that file has no name until it is whole and synced,
    so a process killed while writing leaves nothing behind.

    A symlink at `path` is replaced by the file, never followed: its target stays as it was
    (another user may have planted the link in a shared folder, pointing at a file of yours; the
    kernel's protected_symlinks only guards opening a link, and this never opens one). In a sticky
    folder that everyone can write to (/tmp) a symlink there is refused with an InputError, since it
    is someone else's trap as likely as ours. Anything else that is not a regular file (a folder, a
    device, a pipe, a socket) is refused with an InputError, never swapped for a file. `mode`
    defaults to an ordinary user file's (0666 less the umask); private files pass 0o600, which the
    file has from its creation on, never wider; on Windows, where chmod cannot say that, a private
    mode gives the file an ACL for the user alone (PRIVATE_FILE_ACL) before the data is written.
    Returns `path`.
    """
    target = Path(path)
    try:
        existing: int | None = os.lstat(target).st_mode
    except FileNotFoundError:
        existing = None
    if existing is not None and stat.S_ISLNK(existing) and shared_folder(target.parent):
        raise InputError(
            f"cannot write {os.fspath(path)}: it is a symbolic link in {target.parent}, a folder every user can "
            "write to (another user may have planted it)",
            "remove the link, or write to another name or folder",
        )
    if existing is not None and not (stat.S_ISREG(existing) or stat.S_ISLNK(existing)):
        kind = "a folder" if stat.S_ISDIR(existing) else "not a regular file (a device, pipe or socket)"
        raise InputError(f"cannot write {os.fspath(path)}: it is {kind}", "choose a file name for the output")
    folder = target.parent
    folder.mkdir(parents=True, exist_ok=True)
    # icacls protects a file by name: with an ACL step the file is named from the start
    fd, tmp = _unnamed_file(folder) if PRIVATE_FILE_ACL is None else (-1, None)
    if tmp is None:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            if tmp:
                os.chmod(tmp, 0o666 & ~_umask() if mode is None else mode)  # mkstemp makes 0600; chmod: Windows too
            else:
                os.fchmod(fd, 0o666 & ~_umask() if mode is None else mode)
            if tmp and mode is not None and not mode & 0o077 and PRIVATE_FILE_ACL is not None:
                PRIVATE_FILE_ACL(tmp)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            if not tmp:  # named only now that it is whole: a kill before this leaves nothing behind
                tmp = _name(fd, folder, target.name)
        os.replace(tmp, target)  # closed first: Windows cannot rename an open file
    except BaseException:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _unnamed_file(folder: Path) -> tuple[int, str | None]:
    """A new file in `folder` that has no name yet (Linux's O_TMPFILE), and "" for its name; or
    (-1, None) where the system or the filesystem has none (then a named temp file serves)."""
    flag = getattr(os, "O_TMPFILE", 0)
    if not flag or not os.path.isdir("/proc/self/fd"):
        return -1, None
    try:
        return os.open(folder, flag | os.O_WRONLY, 0o600), ""
    except OSError:  # a filesystem without it (NFS, SMB, some FUSE): EOPNOTSUPP, EISDIR, EINVAL
        return -1, None


def _name(fd: int, folder: Path, name: str) -> str:
    """Link the unnamed file `fd` into `folder` under a fresh temp name, for the rename."""
    # linkat(AT_SYMLINK_FOLLOW) on the /proc link is how an O_TMPFILE gets a name; CPython calls
    # plain link() (which follows no link) unless a directory fd is given, hence `dst_dir_fd`.
    directory = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        while True:
            tmp = f".{name}.{secrets.token_hex(6)}.tmp"
            try:
                os.link(f"/proc/self/fd/{fd}", tmp, dst_dir_fd=directory, follow_symlinks=True)
                return os.path.join(folder, tmp)
            except FileExistsError:
                continue
    finally:
        os.close(directory)


def shared_folder(folder: Path) -> bool:
    """Whether `folder` is sticky and writable by every user (as /tmp is): other users' files there
    cannot be removed by us, and theirs may sit where we write."""
    try:
        mode = os.stat(folder).st_mode
    except OSError:
        return False
    return bool(mode & stat.S_ISVTX and mode & stat.S_IWOTH)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Windows process creation flag (subprocess has it on Windows only): no console window flashes up
# when the engine, or the extension under Inkscape's windowless Python, runs a command-line tool.
CREATE_NO_WINDOW = 0x08000000
_SID = re.compile(rb"S-1-[0-9]+(?:-[0-9]+)+")
# The current user's name and SID, as CSV (one string: its switches, quoted alone, would read as absolute
# paths to the repository check in tests/test_repository.py).
WHOAMI = "whoami /user /fo csv /nh".split()  # noqa: SIM905


def restrict_to_user(path: str, run: Callable[..., subprocess.CompletedProcess[bytes]] = subprocess.run) -> None:
    """Windows: what chmod 0600 means elsewhere. The file's inherited permissions are dropped and
    the current user (by SID: names may be non-ASCII or ambiguous) gets the only entry; raises
    OSError, naming the file, when that cannot be done."""
    who = run(WHOAMI, capture_output=True, timeout=30, creationflags=CREATE_NO_WINDOW)
    sid = _SID.search(who.stdout or b"") if who.returncode == 0 else None
    if sid is None:
        raise OSError(f"cannot protect {path}: whoami did not name the current user's SID")
    done = run(
        icacls_command(path, sid.group().decode()), capture_output=True, timeout=30, creationflags=CREATE_NO_WINDOW
    )
    if done.returncode != 0:
        said = (done.stderr or done.stdout or b"").decode(errors="replace").strip()
        raise OSError(f"cannot restrict {path} to its user: icacls exited {done.returncode}: {said}")


def icacls_command(path: str, sid: str) -> list[str]:
    """icacls: remove inherited entries, then grant full control to `sid` alone."""
    return ["icacls", path, "/inheritance:r", "/grant:r", f"*{sid}:(F)"]


# Called on a private file before anything is written to it; None where chmod is enough.
PRIVATE_FILE_ACL: Callable[[str], None] | None = restrict_to_user if sys.platform == "win32" else None
