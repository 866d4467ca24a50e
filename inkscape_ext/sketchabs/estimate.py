"""What an Object Sketch costs on the running engine, before it starts, and the designer's choice.

One estimate serves Engine Status's preset list and the first screen of the progress window: the
engine's measured seconds per iteration of one sketch (its status reply's `rates`, measured on this
engine during its last job) times the iterations of every seed and level. CLIPasso stops a sketch
when its loss settles, so the figure is what the job takes at most. Before the first job the engine
has measured nothing: then there is no estimate, and no screen.

Where the job is long (over LONG_JOB_S) and a window can be shown, `ask` shows the estimate first
and lets the designer start it, pick a faster preset or cancel.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.estimates import TimeEstimate, sketch_job_time
from sketchabs import gui, messages
from sketchabs.progress import duration

LONG_JOB_S = 180.0  # an estimate over this gets the first screen; shorter jobs start at once
START, FASTER, CANCEL = "start", "faster", "cancel"


def job_time(rates: dict, seeds: int, iterations: int, levels: int) -> TimeEstimate | None:
    """How long one photo's Object Sketch takes on the engine whose status `rates` these are: about
    until usable, at most to the iteration cap (bridge.estimates; None: not measured yet)."""
    rate = rates.get("sketch")
    return sketch_job_time(rate, seeds * levels, iterations) if rate else None


def at_most_s(rates: dict, seeds: int, iterations: int, levels: int) -> float | None:
    """At most how many seconds one photo's Object Sketch takes (None: not measured yet)."""
    time = job_time(rates, seeds, iterations, levels)
    return time.at_most_s if time else None


@dataclass(frozen=True)
class Offer:
    """What the first screen offers: the job as chosen, and the faster preset (if there is one)."""

    seconds: float  # at most, all photos
    photos: int
    device: str
    faster_name: str = ""  # the faster preset's label; "" when there is none
    faster_seconds: float = 0.0


def ask(offer: Offer | None, window: bool) -> str:
    """The designer's choice (START, FASTER or CANCEL); START at once for a short or unknown job, or
    where no window can be shown."""
    if offer is None or offer.seconds <= LONG_JOB_S or not window:
        return START
    toolkit = gui.gtk()
    if toolkit is None:
        return START
    Gtk = toolkit[0]
    dialog = Gtk.Dialog(title=messages.ESTIMATE_TITLE)
    dialog.set_default_size(440, -1)
    dialog.set_keep_above(True)
    dialog.set_position(Gtk.WindowPosition.CENTER)
    text = messages.estimate(
        offer.photos, duration(offer.seconds), offer.device, offer.faster_name, duration(offer.faster_seconds)
    )
    label = Gtk.Label(label=text, xalign=0)
    label.set_line_wrap(True)
    label.set_max_width_chars(60)
    area = dialog.get_content_area()
    area.set_spacing(8)
    area.set_border_width(12)
    area.pack_start(label, False, False, 0)
    dialog.add_button(messages.CANCEL_CHOICE, 0)
    if offer.faster_name:
        dialog.add_button(messages.faster_choice(offer.faster_name), 1)
    dialog.add_button(messages.START_CHOICE, 2)
    dialog.set_default_response(2)
    dialog.show_all()
    with gui.stderr_silenced():
        response = dialog.run()
    dialog.destroy()
    while Gtk.events_pending():
        Gtk.main_iteration()
    return {2: START, 1: FASTER}.get(response, CANCEL)
