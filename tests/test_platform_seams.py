"""The light package's Windows decisions, through seams that run on Linux: the connection file's
ACL (chmod 0600 means nothing there) and how the engine is started detached; and the start itself,
for real, with non-ASCII paths, a code page that cannot write them, and a foreign PYTHONHOME."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridge import atomic, launcher
from bridge.client import EngineClient, EngineUnavailable
from bridge.launcher import engine_command
from tests.harness.paths import ROOT

SID = "S-1-5-21-3623811015-3361044348-30300820-1013"


class Recorder:
    """A stand-in for the Windows ACL step: notes the file it was given and what it held then."""

    def __init__(self, fail: bool = False):
        self.calls: list[tuple[str, bytes]] = []
        self.fail = fail

    def __call__(self, path: str) -> None:
        self.calls.append((path, Path(path).read_bytes()))
        if self.fail:
            raise OSError(f"cannot restrict {path} to its user: icacls exited 5: Access is denied.")


def test_a_private_file_is_restricted_before_the_secret_reaches_it(tmp_path, monkeypatch):
    acl = Recorder()
    monkeypatch.setattr(atomic, "PRIVATE_FILE_ACL", acl)
    target = tmp_path / "run dir" / "engine.json"
    atomic.write_atomic(target, b'{"key": "secret"}', mode=0o600)
    assert target.read_bytes() == b'{"key": "secret"}'
    ((restricted, held),) = acl.calls
    assert Path(restricted).parent == target.parent and Path(restricted) != target, "the temp file, before the rename"
    assert held == b"", "restricted while still empty: the secret never sits under inherited permissions"
    atomic.write_atomic(tmp_path / "result.svg", b"<svg/>")  # an ordinary file: no ACL step
    assert len(acl.calls) == 1


def test_a_failed_restriction_writes_nothing_and_keeps_the_old_file(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "PRIVATE_FILE_ACL", Recorder(fail=True))
    target = tmp_path / "engine.json"
    target.write_bytes(b"old")
    with pytest.raises(OSError, match=r"cannot restrict .* to its user"):
        atomic.write_atomic(target, b"new secret", mode=0o600)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["engine.json"]


def windows_tools(whoami_out: bytes, icacls_rc: int = 0):
    """Fake whoami and icacls as Windows answers them; records each command and its options."""
    seen: list[tuple[list[str], dict]] = []

    def run(command, **options):
        seen.append((command, options))
        if command[0] == "whoami":
            return subprocess.CompletedProcess(command, 0, whoami_out, b"")
        return subprocess.CompletedProcess(command, icacls_rc, b"", b"Access is denied." if icacls_rc else b"")

    return run, seen


def test_restrict_to_user_grants_the_users_sid_alone_without_a_console_window():
    # whoami in an OEM code page: the name is not ASCII, the SID always is.
    run, seen = windows_tools(f'"desktop-7\\zoë müller","{SID}"\r\n'.encode("cp850"))
    path = r"C:\Users\Zoë Müller\AppData\Local\sketch-abstraction\.engine.json.x1.tmp"
    atomic.restrict_to_user(path, run=run)
    assert [command for command, _ in seen][1] == ["icacls", path, "/inheritance:r", "/grant:r", f"*{SID}:(F)"]
    assert all(options["creationflags"] & atomic.CREATE_NO_WINDOW for _, options in seen)


def test_restrict_to_user_fails_loudly():
    run, _ = windows_tools(f'"pc\\zoe","{SID}"'.encode(), icacls_rc=5)
    with pytest.raises(OSError, match=r"cannot restrict .*engine\.json to its user: icacls exited 5: Access is denied"):
        atomic.restrict_to_user(r"C:\run\engine.json", run=run)
    run, _ = windows_tools(b"ERROR: no user\r\n")
    with pytest.raises(OSError, match="did not name the current user's SID"):
        atomic.restrict_to_user(r"C:\run\engine.json", run=run)


def test_the_engine_is_detached_without_posix_calls_on_windows():
    windows = launcher.detach_options("win32")
    assert set(windows) == {"creationflags"}, "no start_new_session (setsid) on Windows"
    assert windows["creationflags"] & 0x08000000, "CREATE_NO_WINDOW: no console window for the engine"
    assert windows["creationflags"] & 0x00000200, "CREATE_NEW_PROCESS_GROUP: a Ctrl+C elsewhere is not its"
    assert not windows["creationflags"] & 0x00000008, (
        "not DETACHED_PROCESS: the venv launcher's child would get a window"
    )
    assert launcher.detach_options("linux") == launcher.detach_options("darwin") == {"start_new_session": True}


def test_engine_environment():
    env = launcher.engine_environment(
        {"PYTHONHOME": r"C:\Program Files\Inkscape", "PATH": "x", "PYTHONIOENCODING": "cp1252"}
    )
    assert env == {"PATH": "x", "PYTHONIOENCODING": "utf-8"}


@pytest.mark.slow
def test_the_engines_error_reaches_the_client_verbatim_from_non_ascii_paths(tmp_path, monkeypatch):
    """A user folder with spaces and non-ASCII letters, a console encoding that cannot write them
    (ASCII here, as a Windows code page cannot write every name), and a PYTHONHOME left by the
    program that started the client: the engine still starts, and its own error, which names a
    folder in that user's home, reaches the client letter for letter."""
    home = tmp_path / "Zoë Müller 田中"
    for name in ("home", "run", "data", "cache"):
        (home / name).mkdir(parents=True)
    for name, value in {
        "HOME": home / "home",
        "XDG_CACHE_HOME": home / "cache",
        "SKETCH_ABSTRACTION_RUNTIME_DIR": home / "run",
        "SKETCH_ABSTRACTION_DATA_DIR": home / "data",
        "SKETCH_ABSTRACTION_OFFLINE": "1",
        "PYTHONIOENCODING": "ascii",
        "PYTHONHOME": tmp_path / "Inkscape" / "lib" / "python",
    }.items():
        monkeypatch.setenv(name, str(value))
    weights = home / "home" / "CLIP Gewichte"  # missing: the engine stops at once with an error naming it
    with pytest.raises(EngineUnavailable) as failed:
        EngineClient.connect(start=engine_command(sys.executable, "openai", "cpu", str(weights)), ready_timeout_s=120)
    assert failed.value.code == "start_failed"
    assert str(weights) in failed.value.message, failed.value.message


def test_a_write_killed_mid_fsync_leaves_no_temp_file(tmp_path):
    """Issue 22: a preview killed while its bytes were being synced left a `.tmp` beside it. The file
    has no name until it is whole (O_TMPFILE where Linux has it), so a SIGKILL in fsync leaves the
    folder as it was."""
    import signal

    if not getattr(os, "O_TMPFILE", 0):
        pytest.skip("no O_TMPFILE on this system: a named temp file serves, and a kill can leave it")
    target = tmp_path / "out.preview.png"
    target.write_bytes(b"old")
    killer = (
        "import os, signal, sys; from bridge import atomic; "
        "os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL); "
        "atomic.write_atomic(sys.argv[1], b'new' * 100000)"
    )
    done = subprocess.run([sys.executable, "-c", killer, str(target)], cwd=ROOT, timeout=60)
    assert done.returncode == -signal.SIGKILL
    assert [p.name for p in tmp_path.iterdir()] == ["out.preview.png"] and target.read_bytes() == b"old"
    atomic.write_atomic(target, b"new")  # and an ordinary write still works
    assert target.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["out.preview.png"]
