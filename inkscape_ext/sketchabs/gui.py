"""The extension's own GTK 3 windows (where PyGObject is there, as in Inkscape's Linux packages): GTK
loaded quietly, the user's theme followed, and information shown in a window of ours instead of
Inkscape's "received additional data" dialog, which reads as a failure.

Theme: GTK applies the user's own GTK settings (theme, prefer-dark) by itself; Inkscape keeps its
own theme choice in its preferences (group "theme": gtkTheme, preferDarkTheme), which a separate
process does not see, so `follow_inkscape_theme` applies that too. No colour is hard-coded.
Inkscape writes its preferences file when it quits, so a theme switched in a running Inkscape
reaches the extension's windows after Inkscape's next start (docs/inkscape.md says so).
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from xml.etree import ElementTree

import inkex

from sketchabs import headless

INFO_TITLE = "Sketch Abstraction"


def missing_toolkit() -> bool:
    """Whether a designer sits at a display (not a batch run) where GTK windows cannot be shown
    because Inkscape's Python lacks PyGObject with GTK 3 (install.py says the command that adds it)."""
    has_display = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return has_display and not headless.in_batch() and gtk() is None


def gtk():
    """(Gtk, GLib, GdkPixbuf), or None where there is no display, no PyGObject with GTK 3, or no
    one to click (`inkscape --batch-process`)."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or headless.in_batch():
        return None
    os.environ.setdefault("NO_AT_BRIDGE", "1")  # no accessibility-bus warning on stderr
    try:
        with stderr_silenced():
            import gi

            gi.require_version("Gtk", "3.0")
            gi.require_version("GdkPixbuf", "2.0")
            from gi.repository import GdkPixbuf, GLib, Gtk

            if not Gtk.init_check(sys.argv)[0]:
                return None
    except (ImportError, ValueError):
        return None
    follow_inkscape_theme(Gtk)
    return Gtk, GLib, GdkPixbuf


def inkscape_theme(preferences: Path) -> tuple[str | None, bool | None]:
    """(GTK theme name, prefer dark) as Inkscape's preferences.xml sets them; None where unset."""
    try:
        root = ElementTree.parse(preferences).getroot()
    except (OSError, ElementTree.ParseError):
        return None, None
    group = root.find("group[@id='theme']")
    if group is None:
        return None, None
    dark = group.get("preferDarkTheme")
    return group.get("gtkTheme") or None, None if dark is None else dark in ("1", "true")


def follow_inkscape_theme(Gtk) -> None:
    name, dark = inkscape_theme(_preferences_file())
    settings = Gtk.Settings.get_default()
    if settings is None:
        return
    if name:
        settings.set_property("gtk-theme-name", name)
    if dark is not None:
        settings.set_property("gtk-application-prefer-dark-theme", dark)


def _preferences_file() -> Path:
    profile = os.environ.get("INKSCAPE_PROFILE_DIR")
    if profile:
        return Path(profile) / "preferences.xml"
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(config) / "inkscape" / "preferences.xml"


def tell(text: str, window: bool = True) -> None:
    """Show information (not a failure) and end the effect with the document unchanged: in our own
    window where GTK is there and a window is wanted (Inkscape then shows nothing more: no stderr, an
    unsuccessful exit makes it keep the document), else on stderr (Inkscape's message dialog; in a
    batch run, Inkscape's own stderr: sketchabs.headless)."""
    toolkit = gtk() if window else None
    if toolkit is None:
        raise inkex.AbortExtension(text)
    _dialog(toolkit[0], text)
    sys.exit(inkex.utils.ABORT_STATUS)


def inform(text: str, window: bool = True) -> None:
    """Show information after the effect did its work (the document changes as it made it): in our
    own window where GTK is there and a window is wanted, else on stderr (Inkscape's message)."""
    toolkit = gtk() if window else None
    if toolkit is None:
        inkex.errormsg(text)
        return
    _dialog(toolkit[0], text)


def _dialog(Gtk, text: str) -> None:
    dialog = Gtk.MessageDialog(
        message_type=Gtk.MessageType.INFO, buttons=Gtk.ButtonsType.CLOSE, text=INFO_TITLE, title=INFO_TITLE
    )
    dialog.format_secondary_text(text)
    dialog.set_keep_above(True)
    with stderr_silenced():
        dialog.run()
    dialog.destroy()


@contextmanager
def stderr_silenced():
    """GTK and GLib print warnings straight to file descriptor 2; in an Inkscape effect any such byte
    becomes an error dialog (or a hang, headless). Our own errors travel as exceptions instead."""
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
