#!/usr/bin/env python3
"""Extensions > Sketch Abstraction > Engine Status: is the engine up (or why it cannot start), on which
device, what the quality presets take on it, and its sketches by photo name with their progress."""

import os
import time

import inkex
from sketch_object import LEVELS, QUALITY

import sketchabs  # noqa: F401  (makes the vendored client importable)
from bridge.client import EngineClient, EngineUnavailable, last_start_error
from bridge.estimates import object_sketch_time
from bridge.params import ClipassoParams
from sketchabs import engine_link, gui, messages
from sketchabs.effect import abort_on_errors, runs_test_models
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
        models = s["models"] + (f" ({messages.TEST_MODELS})" if runs_test_models(s) else "")
        lines = [
            f"The engine {s['version']} is running (process {s['pid']}) on {s['device']}, models: {models}.",
            f"Loaded: {', '.join(s['loaded']) or 'nothing yet'}.",
            preset_costs(s.get("rates", {}).get("sketch"), s["device"]),
            "",
            *job_lines(jobs),
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


def preset_costs(seconds_per_iteration, device: str) -> str:
    """What each Object Sketch preset takes per photo with the default levels, as measured: at most
    to the iteration cap, and about until the sketches are usable (bridge.estimates)."""
    if not seconds_per_iteration:
        return "Time per preset: measured during the first Object Sketch after the engine starts."
    presets = {name: ClipassoParams(seeds=tuple(range(s)), iterations=its) for name, (s, its) in QUALITY.items()}
    times = {name: object_sketch_time(params, seconds_per_iteration) for name, params in presets.items()}
    at_most = ", ".join(f"{name.capitalize()} at most {duration(t.at_most_s)}" for name, t in times.items())
    usable = ", ".join(duration(t.usable_s) for t in times.values())
    return (
        f"Object Sketch per photo ({LEVELS} levels) on this machine ({device}): {at_most} "
        f"(usable after about {usable}; most sketches stop before the cap)."
    )


def job_lines(jobs: list) -> list:
    if not jobs:
        return ["No sketches yet."]
    lines = ["Sketches:"]
    for job in jobs[-SHOWN_JOBS:]:
        when = time.strftime("%H:%M", time.localtime(job["created"]))
        lines.append(f"  {when}  {job['name']}: {_state(job)}")
    if any(job["state"] in ("queued", "running") for job in jobs):
        lines += ["", f"To cancel sketches: {messages.STOP_SKETCHES}."]
    return lines


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
    EngineStatus().run()
