#!/usr/bin/env python3
"""Extensions > Sketch Abstraction > Tools > Insert Finished Sketches: results of jobs whose wait was given up
("Keep it running in the background", the window closed, "submit and return", time limit), placed
over their photos in this document (replacing or adding a variation, as chosen when submitted)."""

import inkex

import sketchabs  # noqa: F401  (makes the vendored client importable)
from bridge.client import JobFailed, JobResult
from sketchabs import engine_link, gui, headless, links, messages
from sketchabs.effect import insert_results
from sketchabs.engine_effect import abort_on_errors


class InsertFinished(inkex.EffectExtension):
    def effect(self):
        abort_on_errors(self._insert, "Insert Finished Sketches")
        links.restore(self.svg, self.options.input_file, engine_link.document_path())

    def _insert(self) -> None:
        image_ids = {el.get_id() for el in self.svg.descendants().filter(inkex.Image)}
        owed = engine_link.owed_to(engine_link.document_path(), image_ids)
        if not owed:
            gui.tell(messages.NOTHING_WAITING)
        results, failures, running = {}, {}, []
        for remote in sorted({job.remote for job in owed}):  # each job from the engine that has it
            with engine_link.connect("auto", 60.0, remote) as client:
                for job in owed:
                    if job.remote != remote:
                        continue
                    try:
                        reply = client.fetch(job.job_id)
                    except JobFailed as err:
                        failures[job.job_id] = err
                        continue
                    if isinstance(reply, JobResult):
                        results[job.job_id] = reply
                    else:
                        running.append(job.title)
        if running and not results and not failures:
            gui.tell(messages.not_finished(running))
        insert_results(self.svg, owed, results, failures)


if __name__ == "__main__":
    headless.route_stderr()  # before anything can write to stderr
    InsertFinished().run()
