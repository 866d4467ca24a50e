"""Inkscape 1.4 for the tests: Debian 13 (trixie) in a chroot, built with debootstrap.

Debian 12 ships Inkscape 1.2 only. The chroot gets Inkscape 1.4 with the Python modules its inkex
needs, GTK's Python bindings and Xvfb; the host's /tmp is bind-mounted, so documents, the Inkscape
profile and the engine's runtime folder have the same paths inside and out, and an engine started
outside (the project's venv) is reached over loopback.

    python -m tests.trixie_inkscape ROOT     # build (or check) a root once, then
    SKETCHABS_TRIXIE_ROOT=ROOT pytest tests/test_inkscape_14.py

Building needs root, debootstrap and Debian's mirror (about 2 minutes); `unavailable` says why a
root cannot be had here, for the tests to skip with that reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SUITE = "trixie"
PACKAGES = (
    "inkscape python3-lxml python3-numpy python3-zmq python3-tinycss2 python3-cssselect python3-packaging "
    "python3-pil python3-gi gir1.2-gtk-3.0 xvfb xauth"
)
# Built once and reused; not under pytest's own folders (see tests/test_inkscape_14.py).
DEFAULT_ROOT = os.path.join(tempfile.gettempdir(), "sketch-abstraction-trixie")
READY = ".sketchabs-ready"  # written last: a root without it is incomplete
MOUNTS = ("proc", "dev", "tmp")


def unavailable() -> str | None:
    """Why a root cannot be built here (None: it can)."""
    if not sys.platform.startswith("linux"):
        return "the Inkscape 1.4 tests build a Debian chroot: Linux only"
    if os.geteuid() != 0:
        return "building the Debian 13 chroot for Inkscape 1.4 needs root (debootstrap, chroot, mount)"
    if shutil.which("debootstrap") is None:
        return "debootstrap is not installed (apt install debootstrap) for the Inkscape 1.4 chroot"
    return None


def mounted(path: Path) -> bool:
    """Whether something is mounted on `path` (a bind mount of the same filesystem included, which
    os.path.ismount does not see)."""
    with open("/proc/self/mounts", encoding="utf-8") as table:
        points = {line.split()[1].replace("\\040", " ") for line in table}
    return str(path.resolve()) in points


def mount(root: Path) -> None:
    """proc, the host's /dev and /tmp inside `root` (each once)."""
    for name in MOUNTS:
        target = root / name
        if mounted(target):
            continue
        if name == "proc":
            subprocess.run(["mount", "-t", "proc", "proc", str(target)], check=True)
        else:
            subprocess.run(["mount", "--bind", f"/{name}", str(target)], check=True)


def unmount(root: Path) -> None:
    for name in reversed(MOUNTS):
        while mounted(root / name):
            if subprocess.run(["umount", "-l", str(root / name)], check=False).returncode != 0:
                break


def build(root: Path) -> Path:
    """A ready root at `root` (built unless it is there already); raises CalledProcessError."""
    if (root / READY).exists():
        return root
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "usr" / "bin").exists():
        subprocess.run(["debootstrap", "--variant=minbase", SUITE, str(root)], check=True, capture_output=True)
    mount(root)
    try:
        install = (
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
            f"--no-install-recommends {PACKAGES}"
        )
        subprocess.run(["chroot", str(root), "sh", "-c", install], check=True, capture_output=True)
    finally:
        unmount(root)
    (root / READY).write_text("ok\n")
    return root


def inkscape(root: Path, *args: str, cwd: str, env: dict, timeout: int) -> subprocess.CompletedProcess:
    """Inkscape 1.4 inside `root` (mounted by the caller) under xvfb-run, in `cwd` (a /tmp path)."""
    inside_env = ["env", "PATH=/usr/bin:/bin", *(f"{k}={v}" for k, v in env.items())]
    # -f: the X authority file in `cwd`, not in a folder of xvfb-run's whose removal can fail on stderr
    command = 'cd "$0" && exec timeout -k 5 ' + str(timeout) + ' xvfb-run -a -f "$0/.Xauthority" inkscape "$@"'
    return subprocess.run(
        ["chroot", str(root), *inside_env, "sh", "-c", command, cwd, *args],
        capture_output=True,
        timeout=timeout + 60,
    )


if __name__ == "__main__":
    reason = unavailable()
    if reason:
        sys.exit(reason)
    print(build(Path(sys.argv[1]).resolve()))
