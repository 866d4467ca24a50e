#!/usr/bin/env python3
"""Extensions > Sketch Abstraction > Object Sketch: CLIPasso at several stroke counts over each photo."""

import inkex

import sketchabs  # noqa: F401  (makes the vendored client importable)
from bridge.errors import InputError
from bridge.params import ClipassoParams, SketchRequest
from sketchabs import estimate, headless
from sketchabs.effect import SketchEffect

# Quality presets: (seeds, iterations). "paper" is the paper's setting; the others trade the
# best-of-seeds pick and the last iterations (CLIPasso converges early) for time.
QUALITY = {"fast": (1, 500), "standard": (2, 1000), "paper": (3, 2000)}
LEVELS = 4  # levels of the default stroke counts (32,16,8,4), for what a preset costs
FASTER = "fast"  # the preset the first screen of a long job offers instead
FASTER_LABEL = "Fast (1 seed, 500 iterations)"  # as the .inx names it


class ObjectSketch(SketchEffect):
    def add_arguments(self, pars):
        super().add_arguments(pars)
        pars.add_argument("--levels", default="32,16,8,4")
        pars.add_argument("--quality", default="standard", choices=(*QUALITY, "custom"))
        pars.add_argument("--seeds", type=int, default=2)  # Custom starts from Standard's values
        pars.add_argument("--iterations", type=int, default=1000)
        pars.add_argument("--converge", type=inkex.Boolean, default=True)
        pars.add_argument("--points", type=int, default=4)

    def strokes(self) -> tuple[int, ...]:
        try:
            return tuple(int(v) for v in self.options.levels.replace(" ", "").split(",") if v)
        except ValueError:
            raise InputError(
                f"Levels must be stroke counts separated by commas, got '{self.options.levels}'", "e.g. 32,16,8,4"
            ) from None

    def preset(self) -> tuple[int, int]:
        """(seeds, iterations) of the chosen quality."""
        return QUALITY.get(self.options.quality, (self.options.seeds, self.options.iterations))

    def offer(self, status, photos):
        rates, levels = status.get("rates", {}), len(self.strokes())
        seconds = estimate.at_most_s(rates, *self.preset(), levels)
        if seconds is None:
            return None
        faster = estimate.at_most_s(rates, *QUALITY[FASTER], levels)
        if faster is None or faster >= seconds:
            return estimate.Offer(seconds * photos, photos, status["device"])
        return estimate.Offer(seconds * photos, photos, status["device"], FASTER_LABEL, faster * photos)

    def use_faster(self):
        self.options.quality = FASTER

    def request(self, photo, mask, variation):
        strokes = self.strokes()
        seeds, iterations = self.preset()
        custom = self.options.quality == "custom"
        params = ClipassoParams(
            strokes=strokes,
            seeds=self.seeds(seeds, variation),
            iterations=iterations,
            control_points=self.options.points,
            # 0: every iteration runs (abs(change) <= 0 only for an unchanged loss)
            min_delta=ClipassoParams.min_delta if self.options.converge or not custom else 0.0,
        )
        return SketchRequest(image=photo.data, params=params, mask=mask, **self.stroke_options()).validate()


if __name__ == "__main__":
    headless.route_stderr()  # before anything can write to stderr
    ObjectSketch().run()
