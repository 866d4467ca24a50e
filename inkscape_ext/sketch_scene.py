#!/usr/bin/env python3
"""Extensions > Sketch Abstraction > Scene Sketch: the CLIPascene fidelity x simplicity matrix over
each photo: a layer per fidelity column holding a layer per cell, each with "Background" and "Object"."""

import inkex

import sketchabs  # noqa: F401  (makes the vendored client importable)
from bridge.errors import InputError
from bridge.params import INPAINT_METHODS, SceneParams, SceneRequest
from sketchabs import headless
from sketchabs.effect import SketchEffect

# Quality presets: (seeds, cap on every stage's iterations; 0 = the paper's). The paper's full
# schedule takes hours on a CPU; the others cap it for a look in minutes.
QUALITY = {"quick": (1, 100), "standard": (1, 500), "paper": (2, 0)}


class SceneSketch(SketchEffect):
    kind = "scene"
    menu_name = "Scene Sketch"
    title_prefix = "Scene sketch of"

    def add_arguments(self, pars):
        super().add_arguments(pars)
        pars.add_argument("--quality", default="standard", choices=(*QUALITY, "custom"))
        pars.add_argument("--layers", default="2,8,11")
        pars.add_argument("--levels", type=int, default=8)
        pars.add_argument("--strokes", type=int, default=64)
        pars.add_argument("--seeds", type=int, default=2)
        pars.add_argument("--iterations", type=int, default=0)
        pars.add_argument("--papergrid", type=inkex.Boolean, default=False)
        pars.add_argument("--inpaint", default=SceneRequest.inpaint, choices=INPAINT_METHODS)
        # minutes: a whole matrix is long work; a scene is split into object and background by default
        pars.set_defaults(timeout=240.0, mask=SceneRequest.mask)

    def request(self, photo, mask, variation):
        try:
            layers = tuple(int(v) for v in self.options.layers.replace(" ", "").split(",") if v)
        except ValueError:
            raise InputError(
                f"Fidelity layers must be numbers 0 to 11 separated by commas, got '{self.options.layers}'",
                "e.g. 2,8,11",
            ) from None
        seeds, iterations = QUALITY.get(self.options.quality, (self.options.seeds, self.options.iterations))
        params = SceneParams(
            layers=layers,
            levels=self.options.levels,
            strokes=self.options.strokes,
            seeds=self.seeds(seeds, variation),
            iterations=iterations,
        )
        return SceneRequest(
            image=photo.data,
            params=params,
            mask=mask,
            inpaint=self.options.inpaint,
            paper_grid=self.options.papergrid,
            **self.stroke_options(),
        ).validate()


if __name__ == "__main__":
    headless.route_stderr()  # before anything can write to stderr
    SceneSketch().run()
