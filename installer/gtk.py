"""Whether Inkscape's Python has the GTK 3 bindings the extension's windows need, and the one command
that adds them.

Inkscape's Windows and macOS builds bring PyGObject and GTK with their Python. Linux distributions
package the bindings apart, and their Inkscape does not pull them in (Debian: python3-gi and
gir1.2-gtk-3.0 are recommendations at most): without them the extension has no progress window, no
live preview, no estimate screen and no Stop button (it then leaves the job to the engine and says
how to stop it). install.py cannot install system packages without the administrator's password, so
it says the exact command for the distribution it runs on.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable

PROBE = "import gi; gi.require_version('Gtk', '3.0'); from gi.repository import Gtk"

# Distribution (os-release ID or ID_LIKE) -> the command that installs the bindings for its python3.
COMMANDS = {
    "debian": "sudo apt install python3-gi gir1.2-gtk-3.0",
    "ubuntu": "sudo apt install python3-gi gir1.2-gtk-3.0",
    "fedora": "sudo dnf install python3-gobject gtk3",
    "rhel": "sudo dnf install python3-gobject gtk3",
    "arch": "sudo pacman -S python-gobject gtk3",
    "opensuse": "sudo zypper install python3-gobject-Gdk typelib-1_0-Gtk-3_0",
    "suse": "sudo zypper install python3-gobject-Gdk typelib-1_0-Gtk-3_0",
}

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def has_gtk(python: str, run: Runner = subprocess.run) -> bool | None:
    """Whether `python` imports GTK 3 through PyGObject; None when it cannot be run."""
    try:
        done = run([python, "-c", PROBE], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.returncode == 0


def install_command(os_release: str) -> str | None:
    """The command that installs the bindings on the distribution `os_release` (the text of
    /etc/os-release) describes; None for one we do not know."""
    fields = {}
    for line in os_release.splitlines():
        key, _, value = line.partition("=")
        fields[key.strip()] = value.strip().strip('"')
    for name in [fields.get("ID", ""), *fields.get("ID_LIKE", "").split()]:
        for known, command in COMMANDS.items():
            if name == known or name.startswith(known + "-"):
                return command
    return None


def advice(python: str, platform: str, os_release: str, run: Runner = subprocess.run) -> str | None:
    """What to tell the user when Inkscape's Python `python` lacks the bindings (None: nothing to say)."""
    if has_gtk(python, run) is not False:
        return None
    what = (
        f"note: Inkscape's Python ({python}) has no GTK 3 bindings (PyGObject): the progress window "
        "(live preview, time left, Stop) and the estimate before long jobs are missing; sketches then "
        "run in the background (Stop Sketches and Insert Finished Sketches handle them)."
    )
    command = install_command(os_release) if platform.startswith("linux") else None
    if command:
        return f"{what} To add them, run: {command}"
    return f"{what} Install PyGObject with GTK 3 for that Python, or use Inkscape's own build from inkscape.org."
