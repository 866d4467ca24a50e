"""Inkscape 1.4 for the tests: Debian 13 (trixie) in a chroot, built with debootstrap.

Debian 12 ships Inkscape 1.2 only. The chroot gets Inkscape 1.4 with the Python modules its inkex
needs, GTK's Python bindings and Xvfb; the host's /tmp is bind-mounted, so documents, the Inkscape
profile and the engine's runtime folder have the same paths inside and out, and an engine started
outside (the project's venv) is reached over loopback. Every command runs in a mount namespace of
its own (unshare), where proc, /dev and /tmp are mounted for it alone: the mounts end with it, so a
killed run leaves nothing mounted for a later `rm -r` of the root to reach the host's /tmp through.

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
from typing import Any

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
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed: the Inkscape 1.4 chroot mounts in a namespace of its own"
    if shutil.which("debootstrap") is None:
        return "debootstrap is not installed (apt install debootstrap) for the Inkscape 1.4 chroot"
    return None


def inside(root: Path, *argv: str, **run: Any) -> subprocess.CompletedProcess:
    """`argv` run by chroot in `root`, with proc, the host's /dev and /tmp mounted in a private
    mount namespace that ends with it; `run`: subprocess.run's keywords."""
    mounts = " && ".join(
        'mount -t proc proc "$0/proc"' if name == "proc" else f'mount --bind /{name} "$0/{name}"' for name in MOUNTS
    )
    script = f'{mounts} && exec chroot "$0" "$@"'
    namespace = ["unshare", "--mount", "--propagation", "private"]
    return subprocess.run([*namespace, "sh", "-c", script, str(root), *argv], **run)


def build(root: Path) -> Path:
    """A ready root at `root` (built unless it is there already); raises CalledProcessError."""
    if (root / READY).exists():
        return root
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "usr" / "bin").exists():
        subprocess.run(["debootstrap", "--variant=minbase", SUITE, str(root)], check=True, capture_output=True)
    install = (
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
        f"--no-install-recommends {PACKAGES}"
    )
    inside(root, "sh", "-c", install, check=True, capture_output=True)
    (root / READY).write_text("ok\n")
    return root


def inkscape(root: Path, *args: str, cwd: str, env: dict, timeout: int) -> subprocess.CompletedProcess:
    """Inkscape 1.4 inside `root` under xvfb-run, in `cwd` (a /tmp path)."""
    inside_env = ["env", "PATH=/usr/bin:/bin", *(f"{k}={v}" for k, v in env.items())]
    # -f: the X authority file in `cwd`, not in a folder of xvfb-run's whose removal can fail on stderr
    command = 'cd "$0" && exec timeout -k 5 ' + str(timeout) + ' xvfb-run -a -f "$0/.Xauthority" inkscape "$@"'
    return inside(root, *inside_env, "sh", "-c", command, cwd, *args, capture_output=True, timeout=timeout + 60)


if __name__ == "__main__":
    reason = unavailable()
    if reason:
        sys.exit(reason)
    print(build(Path(sys.argv[1]).resolve()))
