"""Waiting for the engine: a GTK progress window where PyGObject and GTK 3 are there, otherwise
Inkscape's own "working, please wait" while the script blocks.

The window shows the sketch taking shape (a live preview from the engine over the faded photo),
the stage, iteration, loss and the most time left, and offers two ways out: "Stop the sketch"
cancels the jobs in the engine; "Keep it running in the background" (also closing the window) only
stops the waiting, and Insert Finished Sketches brings the results in later. Either way the
document stays unchanged, unless the designer first chose "Insert it as it is now" (object sketches
only): the engine sends each running job's best strokes of every level so far, those go in as the
finished sketch would, and the same two choices then stop the jobs or leave them running (Insert
Finished Sketches later replaces what went in, by the replace rule). A stop is what the designer
asked for, not an error: the effect ends
without a word (`end_quietly`), so Inkscape shows no "received additional data" dialog and keeps
the document and the selection as they were.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field

import inkex

from bridge.client import JobFailed, JobResult
from bridge.wording import count
from sketchabs import engine_link, gui, messages

POLL_S = 0.5  # how often a wait looks up from the socket to see whether the user gave up
PREVIEW_EVERY_S = 3.0  # how often the engine sends a picture of the sketch so far
STOP, KEEP = "stop", "keep"
NOW_KINDS = frozenset({"sketch"})  # job kinds the engine sends a sketch of while they run


@dataclass
class _Found:
    """What the waiting thread found, for the main thread: finished, failed, fetched as they are now
    ("Insert it as it is now"), each by job id, and the error that ended the wait."""

    results: dict[str, JobResult] = field(default_factory=dict)
    failures: dict[str, JobFailed] = field(default_factory=dict)
    now: dict[str, JobResult] = field(default_factory=dict)
    error: BaseException | None = None


class StoppedWaiting(Exception):
    def __init__(self, choice: str):
        super().__init__(choice)
        self.choice = choice


def follow(
    client, owed, timeout_s: float, window: bool, test_models: bool = False, note: str = ""
) -> tuple[dict[str, JobResult], dict[str, JobFailed], set[str]]:
    """Wait for every job in `owed`: ({job_id: JobResult}, {job_id: JobFailed}, running), where
    `running` names the jobs whose result is their sketch as it was when the designer chose "Insert
    it as it is now" and kept them running (the others of those were cancelled).

    Aborts the effect (document unchanged) when the user stops the sketches (cancelled in the
    engine), keeps them running in the background, or `timeout_s` passes (both: jobs kept), unless
    a sketch as it is now was fetched: then it is returned. `note`: a setting the designer should see
    in the window's title (e.g. that New variation is on).
    """
    ui = _Window.open(owed, test_models, note) if window else None
    state = _Found()

    def work() -> None:
        try:
            _wait_all(client, owed, time.monotonic() + timeout_s, state, ui)
        except BaseException as err:  # handed to the main thread
            state.error = err
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
    error = state.error
    unfinished = [job for job in owed if job.job_id not in state.results and job.job_id not in state.failures]
    now = {job.job_id: state.now[job.job_id] for job in unfinished if job.job_id in state.now}
    if now and isinstance(error, StoppedWaiting):
        if error.choice == STOP:
            cancel(client, [job.job_id for job in unfinished])
        running = set(now) if error.choice == KEEP else set()
        return {**state.results, **now}, state.failures, running
    if isinstance(error, StoppedWaiting) and error.choice == STOP:
        cancel(client, [job.job_id for job in unfinished])
        end_quietly()
    if isinstance(error, StoppedWaiting):
        gui.tell(messages.kept_running(len(unfinished)))
    if isinstance(error, TimeoutError):
        raise inkex.AbortExtension(messages.timed_out(timeout_s / 60))
    if error is not None:
        raise error
    return state.results, state.failures, set()


def end_quietly() -> None:
    """End the effect having inserted nothing and with nothing to say: an unsuccessful exit without a
    byte on stderr, so Inkscape keeps the document and the selection and shows no dialog."""
    sys.stdout.flush()
    sys.exit(inkex.utils.ABORT_STATUS)


def stopped(failures: dict) -> bool:
    """Whether every failure in `failures` ({job_id: JobFailed}) is a cancellation (Stop Sketches, or
    the progress window's Stop): what the designer asked for, not an error."""
    return all(err.code == "cancelled" for err in failures.values())


def cancel(client, job_ids: list[str]) -> list[str]:
    """Cancel these jobs in the engine and forget all but those that finished meanwhile (Insert
    Finished Sketches still brings those in); returns the ids of the ones stopped."""
    stopped = []
    for job_id in job_ids:
        try:
            state = client.cancel(job_id)
        except JobFailed as err:  # the engine no longer knows it (its results were deleted)
            if err.code != "unknown_job":
                raise
            state = "unknown"
        if state != "done":
            stopped.append(job_id)
    engine_link.forget(stopped)
    return stopped


def _wait_all(client, owed, deadline: float, state: _Found, ui) -> None:
    for index, job in enumerate(owed):

        def show(msg, job=job, index=index) -> None:
            if ui is not None:
                ui.update(index, job, msg.msg_type, msg.content, msg.buffers[0] if msg.buffers else None)

        while True:
            if ui is not None and ui.choice is not None:
                raise StoppedWaiting(ui.choice)
            if ui is not None and ui.wants_now:
                _fetch_now(client, owed, state, ui)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            try:
                state.results[job.job_id] = client.wait(
                    job.job_id, on_message=show, timeout_s=min(POLL_S if ui else remaining, remaining)
                )
                break
            except TimeoutError:
                continue
            except JobFailed as err:
                state.failures[job.job_id] = err
                break


def _fetch_now(client, owed, state: _Found, ui) -> None:
    """ "Insert it as it is now": each unfinished job's sketch so far, kept in `state.now`; the
    window then asks stop or keep, or says why there is none (e.g. not evaluated yet) and offers it
    again."""
    ui.wants_now = False
    why = []
    for job in owed:
        if job.job_id in state.results or job.job_id in state.failures:
            continue
        try:
            svg = client.snapshot(job.job_id)
        except JobFailed as err:
            why.append(err.message)
            continue
        state.now[job.job_id] = JobResult(job.job_id, job.title, job.kind, svg)
    ui.now_fetched(bool(state.now), "; ".join(why))


def status_line(content: dict, kind: str = "sketch") -> str:
    """'loss 0.52 · at most 4 min left' (what of it is known) for a progress message's content of a
    job of `kind`. An object sketch's (or refine's) time left is an upper bound, as sketches that
    converge stop early; a scene runs every stage to its count, so its time is an estimate."""
    loss, eta = content.get("loss"), content.get("eta_s")
    parts = [
        content.get("detail") or "",
        f"loss {loss:.4g}" if loss is not None else "",
        f"{'about' if kind == 'scene' else 'at most'} {duration(eta)} left" if eta else "",
    ]
    return " · ".join(p for p in parts if p)


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


class _Window:
    """A small GTK 3 window: which photo, the sketch so far, stage, iteration, loss, time left, and
    the two choices."""

    @classmethod
    def open(cls, owed, test_models: bool, note: str = ""):
        toolkit = gui.gtk()
        return None if toolkit is None else cls(owed, test_models, note, *toolkit)

    def __init__(self, owed, test_models: bool, note: str, Gtk, GLib, GdkPixbuf):
        self.Gtk, self.GLib, self.GdkPixbuf, self.total = Gtk, GLib, GdkPixbuf, len(owed)
        self.choice: str | None = None
        self.wants_now = False  # "Insert it as it is now" was clicked; the waiting thread fetches it
        self.asking: str | None = None  # what the heading asks meanwhile, instead of the photo's name
        self.window = Gtk.Window(title=f"{messages.WINDOW_TITLE}: {note}" if note else messages.WINDOW_TITLE)
        # Centred on the screen: a separate process cannot ask for Inkscape's window, which usually
        # fills the screen, so this puts it over Inkscape instead of in a corner.
        self.window.set_position(Gtk.WindowPosition.CENTER)
        self.window.set_default_size(440, -1)
        self.window.set_keep_above(True)
        box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=8, margin=12)
        self.heading, self.detail, self.bar = Gtk.Label(xalign=0), Gtk.Label(xalign=0), Gtk.ProgressBar()
        self.heading.set_text(f"Waiting for the engine ({count(self.total, 'photo')})")
        self.detail.set_line_wrap(True)
        self.bar.set_show_text(True)
        self.preview = Gtk.Image()
        self.preview.set_size_request(256, 256)
        buttons = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=8)
        for label, tip, choice in (
            (messages.STOP_CHOICE, messages.STOP_TIP, STOP),
            (messages.KEEP_CHOICE, messages.KEEP_TIP, KEEP),
        ):
            button = Gtk.Button(label=label)
            button.set_tooltip_text(tip)
            button.connect("clicked", lambda _button, choice=choice: self._choose(choice))
            buttons.pack_start(button, True, True, 0)
        self.now_button = Gtk.Button(label=messages.NOW_CHOICE)  # shown for jobs that have one
        self.now_button.set_tooltip_text(messages.NOW_TIP)
        self.now_button.connect("clicked", lambda _button: self._want_now())
        self.window.connect("delete-event", self._closed)
        widgets = [self.heading, self.preview, self.bar, self.detail]
        if test_models:
            widgets.append(Gtk.Label(label=f"Running with {messages.TEST_MODELS}.", xalign=0))
        if all(job.kind in NOW_KINDS for job in owed):
            widgets.append(self.now_button)
        for widget in (*widgets, buttons):
            box.pack_start(widget, False, False, 0)
        self.window.add(box)
        self.window.show_all()

    def run(self) -> None:
        with gui.stderr_silenced():
            self.Gtk.main()

    def close(self) -> None:
        self.GLib.idle_add(self._destroy)

    def update(self, index: int, job, msg_type: str, content: dict, picture: bytes | None) -> None:
        self.GLib.idle_add(self._show, index, job, msg_type, content, picture)

    def _show(self, index, job, msg_type, content, picture) -> bool:
        if self.choice is not None:
            return False
        if self.asking is None:
            self.heading.set_text(f"{job.title} ({index + 1} of {self.total})")
        if msg_type == "queue_update":
            self.bar.set_fraction(0.0)
            self.bar.set_text(f"queued, position {content.get('position')}")
        elif msg_type == "progress":
            total = max(1, content.get("total") or 1)
            self.bar.set_fraction(min(1.0, content.get("iteration", 0) / total))
            self.bar.set_text(f"{content.get('stage')}: {content.get('iteration')} / {total}")
            self.detail.set_text(status_line(content, job.kind))
        if picture is not None:
            self._picture(picture)
        return False

    def now_fetched(self, fetched: bool, why: str) -> None:
        self.GLib.idle_add(self._now_fetched, fetched, why)

    def _want_now(self) -> None:
        self.wants_now, self.asking = True, messages.NOW_FETCHING
        self.now_button.set_sensitive(False)
        self.heading.set_text(self.asking)

    def _now_fetched(self, fetched: bool, why: str) -> bool:
        if fetched:  # the two choices that follow: stop it or keep it running
            self.now_button.hide()
            self.asking = messages.NOW_READY
            self.heading.set_text(self.asking)
        else:  # said until the designer asks again
            self.asking = f"Nothing to insert yet: {why}"
            self.heading.set_text(self.asking)
            self.now_button.set_sensitive(True)
        return False

    def _picture(self, png: bytes) -> None:
        loader = self.GdkPixbuf.PixbufLoader.new_with_type("png")
        try:
            loader.write(png)
            loader.close()
        except self.GLib.Error:
            return  # a damaged picture is skipped; the next one comes in seconds
        self.preview.set_from_pixbuf(loader.get_pixbuf())

    def _closed(self, *_event) -> bool:
        """Closing the window loses nothing: the engine goes on, as with "Keep it running"."""
        self._choose(KEEP)
        return False  # and the window closes

    def _choose(self, choice: str) -> None:
        if self.choice is None:
            self.choice = choice
            self.heading.set_text("Stopping the sketch..." if choice == STOP else "Leaving it to the engine...")

    def _destroy(self) -> bool:
        self.window.destroy()
        self.Gtk.main_quit()
        return False
