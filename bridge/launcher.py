"""Starting the engine for a client: its command line, a detached process that outlives the caller
(and keeps its models loaded for the next request), its log, and what that log says went wrong.

Standard library only, like the rest of bridge/ (the Inkscape extension vendors it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bridge import connection
from bridge.client_errors import EngineUnavailable
from bridge.errors import WeightsMissing

READY_TIMEOUT_S = 180.0  # a cold start loads two CLIP models, slow on a CPU with a cold disk
AUTO_IDLE_TIMEOUT_S = 1800  # an engine a client started frees its memory after half an hour unused
_START_MARK = "--- starting:"

# The engine is started to outlive its starter. Python warns when a Popen object is collected while
# its process runs; here that is the intent, and under Inkscape any stderr output is an error dialog.
warnings.filterwarnings("ignore", message=r"subprocess \d+ is still running", category=ResourceWarning)


def engine_command(
    python: str,
    models: str = "openai",
    device: str = "auto",
    weights_dir: str | None = None,
    idle_timeout_s: float | None = AUTO_IDLE_TIMEOUT_S,
    precision: str = "auto",
    renderer: str = "ours",
) -> list[str]:
    """The command line that starts the engine with `python` (the engine's own environment)."""
    command = [python, "-m", "engine", "serve", "--models", models, "--device", device]
    if weights_dir:
        command += ["--weights-dir", weights_dir]
    if precision != "auto":
        command += ["--precision", precision]
    if renderer != "ours":
        command += ["--renderer", renderer]
    if idle_timeout_s is not None:
        command += ["--idle-timeout", str(idle_timeout_s)]
    return command


def start_engine(command: list[str], ready_timeout_s: float) -> connection.ConnectionInfo:
    """Start the engine detached, its output in the runtime folder's log; wait until it is ready."""
    log_path = connection.runtime_dir() / connection.LOG_FILE
    with open(log_path, "ab", opener=_private) as log:
        log.write(f"\n{_START_MARK} {' '.join(command)}\n".encode())
        log.flush()
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                close_fds=True,
                cwd=os.path.expanduser("~"),
                env=engine_environment(os.environ),
                **detach_options(sys.platform),
            )
        except OSError as err:
            raise EngineUnavailable(
                f"cannot start the engine ({command[0]}: {err.strerror})",
                "re-run install.py so the extension knows the engine's Python",
                "start_failed",
            ) from None
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        info = connection.read_connection()
        if info is not None:
            return info  # ours, or one another client started at the same moment
        holder = connection.lock_holder() if process.poll() == connection.ALREADY_RUNNING_EXIT else None
        if holder and connection.paused(holder):  # it will never write its file: say so now, not after the wait
            raise EngineUnavailable(
                f"the engine (pid {holder}) is paused (stopped) and has no connection file",
                f"resume it with `kill -CONT {holder}` (it writes the file again within a second), "
                f"or end it with `kill {holder}`",
                "not_answering",
            )
        if process.poll() not in (None, connection.ALREADY_RUNNING_EXIT):  # that one: another is loading
            raise EngineUnavailable(
                f"the engine exited while starting: {_last_line(log_path, 'error: ') or 'no error message'}",
                _last_line(log_path, "  fix: ") or f"see {log_path}",
                WeightsMissing.code if process.returncode == WeightsMissing.exit_code else "start_failed",
            )
        time.sleep(0.1)
    holder = connection.lock_holder()
    if holder:
        raise EngineUnavailable(
            f"an engine (pid {holder}) holds the lock but published no connection file within {ready_timeout_s:.0f} s",
            f"if it is not loading models, end it with `kill {holder}`, then try again",
            "start_timeout",
        )
    raise EngineUnavailable(
        f"the engine did not become ready within {ready_timeout_s:.0f} s",
        f"see {log_path}; on a slow machine the first start loads the models for a while",
        "start_timeout",
    )


# Windows process creation flags (subprocess has them on Windows only).
_CREATE_NEW_PROCESS_GROUP = 0x00000200
_CREATE_NO_WINDOW = 0x08000000


def detach_options(platform: str) -> dict[str, Any]:
    """Popen options that let the engine outlive the program that started it. POSIX: a session of
    its own. Windows: a process group of its own, and a console without a window. Not
    DETACHED_PROCESS: a venv's python.exe is a launcher that starts the real interpreter, and a
    launcher without a console would give that one a new, visible console window."""
    if platform == "win32":
        return {"creationflags": _CREATE_NEW_PROCESS_GROUP | _CREATE_NO_WINDOW}
    return {"start_new_session": True}


def engine_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The engine's environment: its starter's, without PYTHONHOME (an embedding program's, such as
    Inkscape's, would point the engine's venv at another Python's library), and with UTF-8 output:
    the log is read back as UTF-8, and a Windows code page would mangle non-ASCII paths and names."""
    env = {name: value for name, value in environ.items() if name.upper() != "PYTHONHOME"}
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def _private(path: str, flags: int) -> int:
    """Open the log 0600 (it names the user's photos), also one an older version made 0644."""
    fd = os.open(path, flags, 0o600)
    if sys.platform != "win32":
        os.fchmod(fd, 0o600)
    return fd


def last_start_error() -> tuple[str, str]:
    """(error, fix) the latest engine start wrote to the log ("" each when it wrote none)."""
    log_path = connection.runtime_dir() / connection.LOG_FILE
    return _last_line(log_path, "error: "), _last_line(log_path, "  fix: ")


def _log_tail(path: Path) -> list[str]:
    """The lines the latest start wrote to the log."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return []
    starts = [i for i, line in enumerate(lines) if line.startswith(_START_MARK)]
    return lines[starts[-1] :] if starts else lines


def _last_line(path: Path, prefix: str) -> str:
    """The text after `prefix` on the latest start's last line that has it ("" if none)."""
    lines = [line for line in _log_tail(path) if line.startswith(prefix)]
    return lines[-1][len(prefix) :] if lines else ""
