#!/usr/bin/env python3
"""Extensions > Sketch Abstraction > Tools > Stop Sketches: cancel this document's sketches in the engine, or
every sketch, or also stop the engine (it frees its memory; the next sketch starts it again)."""

import inkex

import sketchabs  # noqa: F401  (makes the vendored client importable)
from bridge import connection
from bridge.client import EngineClient, EngineUnavailable
from sketchabs import engine_link, gui, headless, messages
from sketchabs.engine_effect import abort_on_errors
from sketchabs.progress import cancel

ACTIVE = ("queued", "running")
EXIT_WAIT_S = 10.0


class StopSketches(inkex.EffectExtension):
    def add_arguments(self, pars):
        pars.add_argument("--which", default="document", choices=("document", "all", "engine"))

    def effect(self):
        abort_on_errors(lambda: gui.tell(self._stop()), "Stop Sketches")

    def _stop(self) -> str:
        try:
            client = EngineClient.connect()
        except EngineUnavailable as err:
            if err.code == "not_running":
                return "The engine is not running: no sketch is being made."
            if self.options.which == "engine" and err.code == "not_answering":
                return end_engine()
            raise
        with client:
            if self.options.which == "document":
                image_ids = {el.get_id() for el in self.svg.descendants().filter(inkex.Image)}
                job_ids = [job.job_id for job in engine_link.owed_to(engine_link.document_path(), image_ids)]
            else:
                job_ids = [job["job_id"] for job in client.jobs() if job["state"] in ACTIVE]
            stopped = cancel(client, job_ids)
            text = messages.stopped(len(stopped)) if stopped else "No sketch was waiting or running."
            if self.options.which == "engine":
                client.shutdown()
                text += " The engine stopped; the next sketch starts it again."
        return text


def end_engine() -> str:
    """End an engine that does not answer (paused or hung): SIGCONT so a paused one can act, then
    SIGTERM; its results are on disk."""
    info = connection.read_connection()
    pid = info.pid if info is not None else connection.lock_holder()
    if not pid:
        return "The engine is not running: no sketch is being made."
    if not connection.terminate(pid, EXIT_WAIT_S):
        return f"The engine (process {pid}) does not stop. End it in your system's task manager."
    return "The engine did not answer and was stopped; the next sketch starts it again."


if __name__ == "__main__":
    headless.route_stderr()  # before anything can write to stderr
    StopSketches().run()
