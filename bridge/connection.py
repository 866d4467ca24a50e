"""Where the engine and its clients meet: the per-user folders and the connection file.

The connection file (JSON: transport, ip, port, key, pid, version, max_message_bytes) is the only way
to find a running engine. It lives in the user's runtime folder (0700), mode 0600 (it holds the
signing key); the engine writes it atomically (engine.service.server); a file whose pid is dead, or whose port no
longer listens, is stale and is replaced. Standard library, platformdirs and bridge.protocol only:
the client imports this under Inkscape's Python.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

from bridge.errors import EngineError
from bridge.protocol import MAX_MESSAGE_BYTES

# Exit status of an engine refused because another one runs or is starting (EX_TEMPFAIL): a client
# that started it waits for the other one instead of reporting a failure.
ALREADY_RUNNING_EXIT = 75

APP = "sketch-abstraction"
# Folder overrides, for tests and for running several engines side by side.
RUNTIME_ENV = "SKETCH_ABSTRACTION_RUNTIME_DIR"
DATA_ENV = "SKETCH_ABSTRACTION_DATA_DIR"
CONNECTION_FILE = "engine.json"
LOG_FILE = "engine.log"
LOCK_FILE = "engine.lock"


@dataclass(frozen=True)
class ConnectionInfo:
    port: int
    key: str
    pid: int
    version: str  # protocol version
    ip: str = "127.0.0.1"
    transport: str = "tcp"
    max_message_bytes: int = MAX_MESSAGE_BYTES  # the engine's limit, so that clients check before sending
    # CurveZMQ (Z85 keys), for an engine that also serves the network (`serve --listen`): the
    # engine's public key, and the key pair this client proves itself with. Empty: PLAIN on loopback.
    server_key: str = ""
    public_key: str = ""
    secret_key: str = ""
    remote: bool = False  # from a remote connection file: another machine's engine (pid means nothing here)

    @property
    def url(self) -> str:
        return f"{self.transport}://{self.ip}:{self.port}"

    @property
    def curve(self) -> bool:
        return bool(self.server_key)

    @property
    def where(self) -> str:
        """The engine as messages name it."""
        return f"the engine at {self.ip}:{self.port}" if self.remote else f"the engine (pid {self.pid})"


def runtime_dir() -> Path:
    """The per-user folder for the connection file, the lock and the engine's log: private (0700,
    ours, not a symlink). The first usable of: $XDG_RUNTIME_DIR, /run/user/<uid>, the user's cache
    folder. Never a predictable name in a shared temp folder, which another user could create first."""
    override = os.environ.get(RUNTIME_ENV)
    if override:
        return private_folder(Path(override))
    tried = []
    for folder in _runtime_candidates():
        try:
            return private_folder(folder)
        except EngineError as err:
            tried.append(err.message)
    raise EngineError(
        f"no private folder for the engine's connection file: {'; '.join(tried)}",
        f"set {RUNTIME_ENV} to a folder only you can write",
    )


def _runtime_candidates() -> list[Path]:
    if sys.platform == "win32" or sys.platform == "darwin":
        return [_platform_dir(platformdirs.user_runtime_dir), _platform_dir(platformdirs.user_cache_dir) / "run"]
    bases = [os.environ.get("XDG_RUNTIME_DIR", ""), f"/run/user/{os.getuid()}"]
    return [Path(base) / APP for base in bases if base and _private_parent(Path(base))] + [
        _platform_dir(platformdirs.user_cache_dir) / "run"  # no runtime folder (ssh, containers, cron)
    ]


def _platform_dir(lookup: Any) -> Path:
    """A platformdirs folder, without the warnings some versions print on every call."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Path(lookup(APP, appauthor=False))


def _private_parent(folder: Path) -> bool:
    """Whether `folder` is a real folder of ours that no one else can write to (so no one else can
    put a folder of theirs where ours goes)."""
    try:
        st = os.lstat(folder)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o022


def private_folder(folder: Path) -> Path:
    """`folder`, created if needed, checked to be a real folder of ours and made 0700; EngineError
    naming the problem otherwise."""
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = os.lstat(folder)
    except OSError as err:
        raise EngineError(f"cannot create {folder}: {err.strerror}", "check the permissions of its parent") from None
    problem = (
        "it is a symlink"
        if stat.S_ISLNK(st.st_mode)
        else "it is not a folder"
        if not stat.S_ISDIR(st.st_mode)
        else "it belongs to another user"
        if sys.platform != "win32" and st.st_uid != os.getuid()
        else ""
    )
    if problem:
        raise EngineError(f"cannot use {folder}: {problem}", "remove it, or point the engine elsewhere")
    if sys.platform != "win32" and st.st_mode & 0o077:
        os.chmod(folder, 0o700)  # created before by an older version, or under a lax umask
    return folder


def data_dir() -> Path:
    """The per-user folder (0700) where finished results wait to be fetched."""
    override = os.environ.get(DATA_ENV)
    return private_folder(Path(override) if override else _platform_dir(platformdirs.user_data_dir))


def weights_dir() -> Path:
    """Where the engine keeps (and downloads) CLIP weights; here, torch-free, so that install.py can
    ask the engine's Python for it in a blink (engine.clip.models.cache_dir is this)."""
    return Path(platformdirs.user_cache_dir(APP)) / "clip"


def connection_path() -> Path:
    return runtime_dir() / CONNECTION_FILE


def read_connection() -> ConnectionInfo | None:
    """The running engine's connection info; None when there is no file, it is unreadable or stale."""
    try:
        data = json.loads(connection_path().read_text(encoding="utf-8"))
        # Keys a later version may add are ignored, so that its version can be compared and named.
        info = ConnectionInfo(**{k: v for k, v in data.items() if k in ConnectionInfo.__dataclass_fields__})
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    return info if pid_alive(info.pid) and _listening(info) else None


_UNLESS_SET = ("server_key", "public_key", "secret_key", "remote")  # absent from a loopback-only engine's file


def file_content(info: ConnectionInfo) -> bytes:
    """The connection file an engine writes: its CURVE keys only when it speaks CURVE."""
    data = {k: v for k, v in vars(info).items() if v or k not in _UNLESS_SET}
    return json.dumps(data).encode("utf-8")


REMOTE_FIELDS = ("ip", "port", "key", "version", "server_key", "public_key", "secret_key")
_Z85_KEY = re.compile(r"[0-9A-Za-z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}")


def read_remote(path: Path) -> ConnectionInfo:
    """The engine of a remote connection file (`sketch-abstraction keys export` on the engine's
    machine); EngineError naming the problem when it is missing, readable by others, or malformed."""
    try:
        st = os.stat(path)
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EngineError(
            f"no remote connection file {path}", "ask the engine's administrator for one (`keys export`)"
        ) from None
    except (OSError, ValueError) as err:
        raise EngineError(
            f"cannot read the remote connection file {path}: {getattr(err, 'strerror', None) or err}",
            "ask the engine's administrator for a new one (`keys export`)",
        ) from None
    if sys.platform != "win32" and st.st_mode & 0o077:
        raise EngineError(
            f"the remote connection file {path} is readable by other users (it holds your secret key)",
            f"make it private: chmod 600 {path}",
        )
    missing = [name for name in REMOTE_FIELDS if not isinstance(data, dict) or name not in data]
    if missing:
        raise EngineError(
            f"{path} is not a remote connection file (no {', '.join(missing)})",
            "use the file `sketch-abstraction keys export` wrote on the engine's machine",
        )
    keys_ok = all(isinstance(data[k], str) and _Z85_KEY.fullmatch(data[k]) for k in REMOTE_FIELDS[4:])
    port = data["port"]
    if not keys_ok or not isinstance(port, int) or not 0 < port < 65536 or not isinstance(data["ip"], str):
        raise EngineError(
            f"{path} is damaged (bad address or keys)", "ask the engine's administrator for a new one (`keys export`)"
        )
    fields = {k: data[k] for k in (*REMOTE_FIELDS, "max_message_bytes") if k in data}
    return ConnectionInfo(pid=0, remote=True, **fields)


def find_engine(wait_s: float = 3.0) -> ConnectionInfo | None:
    """The running engine's connection info. While an engine holds the lock without a connection
    file (deleted under it: it writes it again within a second), wait for the file up to `wait_s`."""
    deadline = time.monotonic() + wait_s
    while True:
        info = read_connection()
        if info is not None or lock_holder() is None or time.monotonic() > deadline:
            return info
        time.sleep(0.1)


def lock_holder() -> int | None:
    """The pid of the engine holding this user's lock (written into the lock file), or None when no
    engine holds it. Windows: None (a locked byte cannot be read there)."""
    if sys.platform == "win32":
        return None
    import fcntl

    try:
        fd = os.open(runtime_dir() / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:  # held: an engine runs (or is starting)
        text = os.read(fd, 32).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else 0  # 0: held by an engine that wrote no pid
    else:
        return None
    finally:
        os.close(fd)


def _listening(info: ConnectionInfo) -> bool:
    """Whether something accepts connections at the engine's address. A file whose pid was reused
    by another process after the engine died would otherwise pass for a running engine."""
    if info.transport != "tcp":
        return True
    try:
        socket.create_connection((info.ip, info.port), timeout=2.0).close()
    except OSError:
        return False
    return True


def remove_connection(pid: int) -> None:
    """Remove the connection file if it is still the one engine `pid` wrote."""
    path = connection_path()
    try:
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == pid:
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def terminate(pid: int, wait_s: float) -> bool:
    """Ask an engine that does not answer (paused or hung) to end: SIGCONT, so that a paused one can
    act, then SIGTERM; whether it exited within `wait_s`. Its results are on disk either way."""
    if hasattr(signal, "SIGCONT"):
        os.kill(pid, signal.SIGCONT)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not pid_alive(pid)


def pid_alive(pid: int) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    if sys.platform == "win32":
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        code = ctypes.c_ulong()
        ctypes.windll.kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        ctypes.windll.kernel32.CloseHandle(handle)
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _not_zombie(pid)


def paused(pid: int) -> bool:
    """Whether process `pid` is stopped (SIGSTOP, Ctrl-Z); False where that cannot be read (not Linux)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return False
    return state in ("T", "t")


def _not_zombie(pid: int) -> bool:
    """A zombie (exited, not yet reaped: e.g. an engine started by a still-running test) is dead."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"
