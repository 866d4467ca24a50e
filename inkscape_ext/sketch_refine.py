#!/usr/bin/env python3
"""Extensions > Sketch Abstraction > Refine Sketch: the engine re-optimises a sketch layer around the
designer's edits. Locked paths (Object > Lock) stay exactly as they are and still count; the others
start where they are. The result replaces the layer's unlocked paths in place (one undo step)."""

import time

import inkex

import sketchabs  # noqa: F401  (makes the vendored client importable)
from bridge.params import MAX_STROKES, STYLE_PEN, STYLES, RefineParams, RefineRequest, request_to_json
from bridge.sketchlayer import LABEL, layer_paths, read_layer, read_result, write_back
from bridge.svgpath import stroke_label
from sketchabs import engine_link, headless, links, messages, progress
from sketchabs.effect import READY_TIMEOUT_S, abort_on_errors, runs_test_models
from sketchabs.images import SelectionError, read_photo
from sketchabs.placement import declare_namespace
from sketchabs.readback import target_layer, target_photo, to_photo

CHANGES = ("none", "add", "simplify")
KIND = "refine"  # the request kind; Insert Finished Sketches links a result fetched later as this kind


class RefineSketch(inkex.EffectExtension):
    def add_arguments(self, pars):
        pars.add_argument("--tab", default="refine")
        pars.add_argument("--iterations", type=int, default=RefineParams.iterations)
        pars.add_argument("--change", default="none", choices=CHANGES)
        pars.add_argument("--count", type=int, default=4)
        pars.add_argument("--style", default=STYLE_PEN, choices=STYLES)
        pars.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
        pars.add_argument("--engine", default=engine_link.LOCAL, choices=(engine_link.LOCAL, engine_link.REMOTE))
        pars.add_argument("--remote", default="")
        pars.add_argument("--timeout", type=float, default=60.0)  # minutes
        pars.add_argument("--window", type=inkex.Boolean, default=True)

    def effect(self):
        abort_on_errors(self._refine, messages.REFINE)
        links.restore(self.svg, self.options.input_file, engine_link.document_path())

    def _refine(self) -> None:
        photo = read_photo(target_photo(self.svg), self.options.input_file)
        layer = target_layer(self.svg)
        name = layer.get(LABEL) or layer.get_id()
        paths = layer_paths(layer)
        if not paths:
            raise SelectionError(messages.refine_no_paths(name))
        strokes = read_layer(layer, paths, to_photo(photo))
        if len(strokes.strokes) > MAX_STROKES:
            raise SelectionError(messages.refine_too_many(name, len(strokes.strokes), MAX_STROKES))
        change = self.options.change
        params = RefineParams(
            iterations=self.options.iterations,
            add=self.options.count if change == "add" else 0,
            simplify=self.options.count if change == "simplify" else 0,
        )
        request = RefineRequest(
            image=photo.data,
            strokes=tuple(tuple(v for point in stroke for v in point) for stroke in strokes.strokes),
            locked=tuple(strokes.locked),
            widths=tuple(strokes.widths),
            params=params,
            style=self.options.style,
        ).validate()
        job, buffers = request_to_json(request)
        remote = engine_link.engine_choice(self.options.engine, self.options.remote)
        preview_every = progress.PREVIEW_EVERY_S if self.options.window else None
        with engine_link.connect(self.options.device, READY_TIMEOUT_S, remote) as client:
            test_models = runs_test_models(client.status())
            title = f"Refined {name} [{messages.TEST_MODELS_TAG}]" if test_models else f"Refined {name}"
            job_id, _position = client.submit(job, buffers, photo.name, preview_every)
            owed = [
                engine_link.PendingJob(
                    job_id,
                    photo.element.get_id(),
                    engine_link.document_path(),
                    title,
                    photo.size,
                    time.time(),
                    kind=KIND,
                    remote=remote,
                )
            ]
            engine_link.remember(owed)  # a wait given up: Insert Finished Sketches brings it in as a new layer
            results, failures, _ = progress.follow(
                client, owed, self.options.timeout * 60, self.options.window, test_models
            )
        engine_link.forget([job_id])
        if job_id in failures and progress.stopped(failures):
            progress.end_quietly()  # stopped from Stop Sketches: what the designer asked for
        if job_id in failures:
            raise failures[job_id]  # abort_on_errors says it in the dialog's words
        refined, added_width = read_result(results[job_id].svg)
        write_back(strokes, refined, added_width, lambda: self.svg.get_unique_id("stroke"))
        layer.set(LABEL, stroke_label(layer.get(LABEL) or "", len(layer_paths(layer))))
        declare_namespace(self.svg)


if __name__ == "__main__":
    headless.route_stderr()  # before anything can write to stderr
    RefineSketch().run()
