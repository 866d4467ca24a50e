#!/usr/bin/env python3
"""Extensions > Sketch Abstraction > Tools > Refine Sketch: the engine re-optimises a sketch layer around the
designer's edits. Locked paths (Object > Lock) stay exactly as they are and still count; the others
start where they are. The result replaces the layer's unlocked paths in place (one undo step)."""

import sketchabs  # noqa: F401  (makes the vendored client importable)
from bridge.params import MAX_STROKES, STYLE_PEN, STYLES, RefineParams, RefineRequest, request_to_json
from bridge.sketchlayer import LABEL, layer_paths, read_layer, read_result, write_back
from bridge.svgpath import stroke_label
from sketchabs import engine_link, headless, messages, progress
from sketchabs.engine_effect import EngineEffect, Job
from sketchabs.images import SelectionError, read_photo
from sketchabs.placement import declare_namespace
from sketchabs.readback import target_layer, target_photo, to_photo

CHANGES = ("none", "add", "simplify")


class RefineSketch(EngineEffect):
    kind = "refine"  # the request kind; Insert Finished Sketches links a result fetched later as this kind
    menu_name = messages.REFINE
    tab = "refine"

    def add_arguments(self, pars):
        super().add_arguments(pars)
        pars.add_argument("--iterations", type=int, default=RefineParams.iterations)
        pars.add_argument("--change", default="none", choices=CHANGES)
        pars.add_argument("--count", type=int, default=4)
        pars.add_argument("--style", default=STYLE_PEN, choices=STYLES)

    def run_effect(self) -> None:
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
        self.job = Job(photo, request_to_json(request), f"Refined {name}")
        waited = self.round_trip()  # a wait given up: Insert Finished Sketches brings it in as a new layer
        job_id = waited.owed[0].job_id
        engine_link.forget([job_id])
        if job_id in waited.failures and progress.stopped(waited.failures):
            progress.end_quietly()  # stopped from Stop Sketches: what the designer asked for
        if job_id in waited.failures:
            raise waited.failures[job_id]  # abort_on_errors says it in the dialog's words
        refined, added_width = read_result(waited.results[job_id].svg)
        write_back(strokes, refined, added_width, lambda: self.svg.get_unique_id("stroke"))
        layer.set(LABEL, stroke_label(layer.get(LABEL) or "", len(layer_paths(layer))))
        declare_namespace(self.svg)

    def jobs(self, status: dict) -> list[Job]:
        return [self.job]


if __name__ == "__main__":
    headless.route_stderr()  # before anything can write to stderr
    RefineSketch().run()
