"""The GTK drivers: Python run in Inkscape's Python under Xvfb beside an effect, that find the
extension's windows, read what they show into a JSON record and press their buttons."""

# What every window driver below starts with: GTK, the extension's messages, a search for widgets
# `save()` of what it saw and `answer()` of a message dialog (each driver sets `record` and `seen`).
GTK_DRIVER = r"""
import json, os, sys
import gi
gi.require_version("Gtk", "3.0")
gi.require_version("Gdk", "3.0")
from gi.repository import Gdk, GLib, Gtk
from sketchabs import messages

def widgets(widget, kind):
    found = [widget] if isinstance(widget, kind) else []
    for child in (widget.get_children() if isinstance(widget, Gtk.Container) else []):
        found += widgets(child, kind)
    return found

def save():
    with open(record, "w") as f:
        json.dump(seen, f)

def answer():  # a message dialog: what it says goes into `seen["told"]`, then it is closed
    dialogs = [w for w in Gtk.Window.list_toplevels() if isinstance(w, Gtk.MessageDialog) and w.get_visible()]
    if not dialogs:
        return True
    seen["told"] = [l.get_text() for l in widgets(dialogs[0], Gtk.Label)]
    save()
    dialogs[0].response(Gtk.ResponseType.CLOSE)
    return False
"""

WINDOW_DRIVER = (
    GTK_DRIVER
    + r"""
import importlib

how, record = sys.argv[1], sys.argv[2]
seen = {}

def poke():
    windows = [w for w in Gtk.Window.list_toplevels() if w.get_title() == "Sketch Abstraction" and w.get_visible()
               and not isinstance(w, Gtk.MessageDialog)]
    if not windows:
        return True
    window = windows[0]
    bar, labels = widgets(window, Gtk.ProgressBar)[0], widgets(window, Gtk.Label)
    pictures = [i.get_pixbuf() for i in widgets(window, Gtk.Image) if i.get_pixbuf() is not None]
    if not any("loss" in l.get_text() for l in labels) or not pictures:
        return True  # wait until the optimisation reports, with a picture of the sketch so far
    seen.update(bar=bar.get_text(), fraction=bar.get_fraction(), labels=[l.get_text() for l in labels],
                preview=[pictures[0].get_width(), pictures[0].get_height()],
                dark=Gtk.Settings.get_default().get_property("gtk-application-prefer-dark-theme"))
    save()
    if os.environ.get("WINDOW_SCREENSHOT"):  # the README's picture, once GTK has drawn this state
        GLib.timeout_add(1500, shoot, window)
    else:
        act(window)
    return False

def shoot(window):
    gdk_window = window.get_window()
    shot = Gdk.pixbuf_get_from_window(gdk_window, 0, 0, gdk_window.get_width(), gdk_window.get_height())
    shot.savev(os.environ["WINDOW_SCREENSHOT"], "png", [], [])
    act(window)
    return False

def act(window):
    if how == "close":
        window.close()  # as the window manager's close button does
    else:
        label = messages.STOP_CHOICE if how == "stop" else messages.KEEP_CHOICE
        [b for b in widgets(window, Gtk.Button) if b.get_label() == label][0].clicked()
    GLib.timeout_add(20, answer)

GLib.timeout_add(20, poke)
module, effect = os.environ.get("EFFECT", "sketch_object:ObjectSketch").split(":")
getattr(importlib.import_module(module), effect)().run(sys.argv[3:])
"""
)
