#!/usr/bin/env python3
"""Extensions > Sketch Abstraction > Tools > Engine Status: is the engine up (or why it cannot start), on which
device, what the quality presets take on it, and its sketches by photo name with their progress."""

import os
import time

import inkex
from sketch_object import LEVELS, QUALITY

import sketchabs  # noqa: F401  (makes the vendored client importable)
from bridge.client import EngineClient, EngineUnavailable
from bridge.launcher import last_start_error
from bridge.wording import count
from sketchabs import engine_link, estimate, gui, headless, messages
from sketchabs.engine_effect import abort_on_errors, runs_test_models
from sketchabs.images import short_label
from sketchabs.progress import duration, status_line

SHOWN_JOBS = 15
NEEDED = ("engine", "torch", "zmq")  # what the engine's Python must find to start


class EngineStatus(inkex.EffectExtension):
    def effect(self):
        abort_on_errors(lambda: gui.tell(self._report()), "Engine Status")

    def _report(self) -> str:
        config = engine_link.load_config()
        try:
            client = EngineClient.connect()
        except EngineUnavailable as err:
            if err.code != "not_running":
                raise
            return not_running(config)
        with client:
            s, jobs = client.status(), client.jobs()
        images = list(self.svg.descendants().filter(inkex.Image))
        mine = {job.job_id for job in engine_link.owed_to(engine_link.document_path(), {i.get_id() for i in images})}
        names = {short_label(i.label or i.get_id()) for i in images} | {_file_name(i) for i in images}
        models = s["models"] + (f" ({messages.TEST_MODELS})" if runs_test_models(s) else "")
        lines = [
            f"The engine {s['version']} is running (process {s['pid']}) on {s['device']}, models: {models}.",
            f"Loaded: {', '.join(s['loaded']) or 'nothing yet'}.",
            preset_costs(s.get("rates", {}), s["device"]),
            "",
            *job_lines(jobs, lambda job: job["job_id"] in mine or job["name"] in names),
        ]
        return "\n".join(lines)


def not_running(config) -> str:
    """Why no engine runs: a broken install (its Python gone or incomplete), a failed last start, or
    simply none started yet."""
    fixes = messages.Fixes(config)
    if not os.path.exists(config.python):
        return fixes.python_missing()
    if not engine_link.engine_finds(config, NEEDED):
        return f"The engine's Python ({config.python}) cannot run the engine (packages missing). {fixes.reinstall()}"
    error, hint = last_start_error()
    if error:
        code = "weights_missing" if "CLIP weights" in error else "start_failed"
        return "The engine's last start failed. " + fixes.for_error(code, error, hint, "Object Sketch")
    return (
        "The engine is not running; it starts with the next sketch and stops after 30 minutes without work.\n"
        f"Engine Python: {config.python}\nModels: {config.models}"
    )


def preset_costs(rates: dict, device: str) -> str:
    """What each Object Sketch preset takes per photo with the default levels, as measured on this
    engine: at most to the iteration cap, and about until the sketches are usable (the same estimate
    as the first screen of a long job: sketchabs.estimate, bridge.estimates)."""
    times = {name: estimate.job_time(rates, seeds, its, LEVELS) for name, (seeds, its) in QUALITY.items()}
    if any(time is None for time in times.values()):
        return "Time per preset: measured during the first Object Sketch after the engine starts."
    at_most = ", ".join(f"{name.capitalize()} at most {duration(t.at_most_s)}" for name, t in times.items() if t)
    usable = ", ".join(duration(t.usable_s) for t in times.values() if t)
    return (
        f"Object Sketch per photo ({LEVELS} levels) on this machine ({device}): {at_most} "
        f"(usable after about {usable}; most sketches stop before the cap)."
    )


def job_lines(jobs: list, of_this_document) -> list:
    """This document's sketches (`of_this_document(job)`: waiting for it, or named after one of its
    photos), newest last; the engine's others only counted, so a day's work of other documents does
    not bury them."""
    if not jobs:
        return ["No sketches yet."]
    here = [job for job in jobs if of_this_document(job)]
    lines = ["This document's sketches:" if here else "No sketches of this document."]
    for job in here[-SHOWN_JOBS:]:
        when = time.strftime("%H:%M", time.localtime(job["created"]))
        lines.append(f"  {when}  {job['name']}: {_state(job)}")
    others = [job for job in jobs if not of_this_document(job)]
    if others:
        active = sum(job["state"] in ("queued", "running") for job in others)
        lines.append(
            f"And {count(len(others), 'other sketch', 'other sketches')} of other documents "
            f"or earlier runs ({active} waiting or running)."
        )
    if any(job["state"] in ("queued", "running") for job in jobs):
        lines += ["", f"To cancel sketches: {messages.STOP_SKETCHES}."]
    return lines


def _file_name(image) -> str:
    """A linked photo's name as the effects name its jobs (the file name without extension)."""
    href = image.get("xlink:href") or image.get("href") or ""
    return "" if href.startswith("data:") else short_label(os.path.splitext(os.path.basename(href))[0])


def _state(job: dict) -> str:
    state, progress = job["state"], job.get("progress")
    if state == "running" and progress:
        line = status_line(progress, job.get("kind", "sketch"))
        return f"running, {progress['stage']} {progress['iteration']} / {progress['total']}; {line}"
    if state == "queued":
        return f"waiting, number {job.get('position', '?')} in line"
    if state == "done" and not job.get("fetched"):
        return "done, not inserted yet (Insert Finished Sketches)"
    return state


if __name__ == "__main__":
    headless.route_stderr()  # before anything can write to stderr
    EngineStatus().run()
