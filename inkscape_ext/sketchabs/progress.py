"""Waiting for the engine: a GTK progress window with Cancel where PyGObject and GTK 3 are there,
otherwise Inkscape's own "working, please wait" while the script blocks.

Cancel or closing the window only stops the waiting: the engine finishes the jobs, and "Insert
Finished Sketches" brings them in later. The document stays unchanged.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager

import inkex

from bridge.client import JobFailed

POLL_S = 0.5  # how often a wait looks up from the socket to see whether the user gave up


class StoppedWaiting(Exception):
    pass


def follow(client, owed, timeout_s: float, window: bool):
    """Wait for every job in `owed`: ({job_id: JobResult}, {job_id: JobFailed}).

    Aborts the effect (document unchanged, jobs kept) when the user cancels or `timeout_s` passes.
    """
    ui = _Window.open(owed) if window else None
    state = {"results": {}, "failures": {}, "error": None}

    def work() -> None:
        try:
            _wait_all(client, owed, time.monotonic() + timeout_s, state, ui)
        except BaseException as err:  # handed to the main thread
            state["error"] = err
        finally:
            if ui is not None:
                ui.close()

    if ui is None:
        work()
    else:
        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        ui.run()
        thread.join()
    error = state["error"]
    later = "The engine keeps working; choose Extensions > Sketch Abstraction > Insert Finished Sketches later."
    if isinstance(error, StoppedWaiting):
        raise inkex.AbortExtension(f"Stopped waiting. {later}")
    if isinstance(error, TimeoutError):
        raise inkex.AbortExtension(f"The sketches are not done after {timeout_s / 60:.0f} minutes. {later}")
    if error is not None:
        raise error
    return state["results"], state["failures"]


def _wait_all(client, owed, deadline: float, state, ui) -> None:
    for index, job in enumerate(owed):

        def show(msg, job=job, index=index) -> None:
            if ui is not None:
                ui.update(index, job.title, msg.msg_type, msg.content)

        while True:
            if ui is not None and ui.cancelled:
                raise StoppedWaiting
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            try:
                state["results"][job.job_id] = client.wait(
                    job.job_id, on_message=show, timeout_s=min(POLL_S if ui else remaining, remaining)
                )
                break
            except TimeoutError:
                continue
            except JobFailed as err:
                state["failures"][job.job_id] = err
                break


class _Window:
    """A small GTK 3 window: which photo, stage, iteration, loss, ETA, and a Cancel button."""

    @classmethod
    def open(cls, owed):
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            return None
        os.environ.setdefault("NO_AT_BRIDGE", "1")  # no accessibility-bus warning on stderr
        try:
            with _stderr_silenced():
                import gi

                gi.require_version("Gtk", "3.0")
                from gi.repository import GLib, Gtk
        except (ImportError, ValueError):
            return None
        return cls(owed, Gtk, GLib)

    def __init__(self, owed, Gtk, GLib):
        self.Gtk, self.GLib, self.total = Gtk, GLib, len(owed)
        self.cancelled = False
        self.window = Gtk.Window(title="Sketch Abstraction")
        self.window.set_default_size(440, -1)
        self.window.set_keep_above(True)
        box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=8, margin=12)
        self.heading, self.detail, self.bar = Gtk.Label(xalign=0), Gtk.Label(xalign=0), Gtk.ProgressBar()
        self.heading.set_text(f"Waiting for the engine ({self.total} photo(s))")
        self.bar.set_show_text(True)
        cancel = Gtk.Button(label="Cancel")
        cancel.set_tooltip_text(
            "Stop waiting. The engine finishes the sketches; insert them later with Insert Finished Sketches."
        )
        cancel.connect("clicked", lambda *_: self._cancel())
        self.window.connect("delete-event", lambda *_: self._cancel() or False)
        for widget in (self.heading, self.bar, self.detail, cancel):
            box.pack_start(widget, False, False, 0)
        self.window.add(box)
        self.window.show_all()

    def run(self) -> None:
        with _stderr_silenced():
            self.Gtk.main()

    def close(self) -> None:
        self.GLib.idle_add(self._destroy)

    def update(self, index: int, title: str, msg_type: str, content: dict) -> None:
        self.GLib.idle_add(self._show, index, title, msg_type, content)

    def _show(self, index, title, msg_type, content) -> bool:
        self.heading.set_text(f"{title} ({index + 1} of {self.total})")
        if msg_type == "queue_update":
            self.bar.set_fraction(0.0)
            self.bar.set_text(f"queued, position {content.get('position')}")
        elif msg_type == "progress":
            total = max(1, content.get("total") or 1)
            self.bar.set_fraction(min(1.0, content.get("iteration", 0) / total))
            self.bar.set_text(f"{content.get('stage')}: {content.get('iteration')} / {total}")
            loss, eta = content.get("loss"), content.get("eta_s")
            parts = [
                content.get("detail") or "",
                f"loss {loss:.4g}" if loss is not None else "",
                f"about {_duration(eta)} left" if eta else "",
            ]
            self.detail.set_text(" · ".join(p for p in parts if p))
        return False

    def _cancel(self) -> None:
        self.cancelled = True
        self.heading.set_text("Stopping the wait (the engine goes on)...")

    def _destroy(self) -> bool:
        self.window.destroy()
        self.Gtk.main_quit()
        return False


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


@contextmanager
def _stderr_silenced():
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
