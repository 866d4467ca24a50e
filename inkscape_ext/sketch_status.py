#!/usr/bin/env python3
"""Extensions > Sketch Abstraction > Engine Status: is the engine up, on which device, what it runs."""

import time

import inkex

import sketchabs  # noqa: F401  (makes the vendored client importable)
from bridge.client import EngineClient, EngineUnavailable
from sketchabs import engine_link
from sketchabs.effect import abort_on_errors


class EngineStatus(inkex.EffectExtension):
    def effect(self):
        abort_on_errors(self._report)

    def _report(self) -> None:
        config = engine_link.load_config()
        try:
            client = EngineClient.connect()
        except EngineUnavailable:
            inkex.errormsg(
                f"The engine is not running. It starts with the next sketch.\n"
                f"Engine Python: {config.python}\nModels: {config.models}"
            )
            return
        with client:
            s, jobs = client.status(), client.jobs()
        lines = [
            f"Engine {s['version']} running (pid {s['pid']}) on {s['device']}, models: {s['models']}, "
            f"renderer: {s.get('renderer', 'ours')}",
            f"Loaded: {', '.join(s['loaded']) or 'nothing yet'}",
            f"Running: {s['running'] or 'nothing'}; waiting: {max(0, len(s['queue']) - bool(s['running']))}",
            "",
            "Jobs:",
        ]
        for job in jobs[-15:]:
            when = time.strftime("%H:%M", time.localtime(job["created"]))
            lines.append(f"  {when}  {job['state']:<11} {job['name']}")
        inkex.errormsg("\n".join(lines))


if __name__ == "__main__":
    EngineStatus().run()
