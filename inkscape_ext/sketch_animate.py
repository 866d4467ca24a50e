#!/usr/bin/env python3
"""Extensions > Sketch Abstraction > Tools > Animate Sketch: the selected sketch drawn stroke by stroke, most
important first, written next to the document as an animated SVG or a GIF. The engine's Python does
the work (`sketch-abstraction animate`, engine/motion); this effect only picks the layer and the file."""

import os
import re
import subprocess
from pathlib import Path

import inkex

import sketchabs  # noqa: F401  (makes the vendored client importable)
from bridge.launcher import engine_environment
from bridge.sketchlayer import LABEL
from sketchabs import engine_link, gui
from sketchabs.engine_effect import abort_on_errors
from sketchabs.images import SelectionError
from sketchabs.placement import PHOTO

TIMEOUT_S = 600


class AnimateSketch(inkex.EffectExtension):
    def add_arguments(self, pars):
        pars.add_argument("--format", default="svg", choices=("svg", "gif"))
        pars.add_argument("--duration", type=float, default=6.0)
        pars.add_argument("--pace", default="length", choices=("length", "even"))
        pars.add_argument("--order", default="importance", choices=("importance", "layers"))
        pars.add_argument("--background", default="none", choices=("none", "white", "photo"))

    def effect(self):
        abort_on_errors(lambda: gui.tell(self._animate()), "Animate Sketch")

    def _animate(self) -> str:
        layer = self._sketch_layer()
        document = engine_link.document_path()
        if not document:
            raise SelectionError("Save the document first: the animation is written next to it.")
        label = layer.get(LABEL) or layer.get_id()
        slug = re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-") or "sketch"
        out = Path(document).with_name(f"{Path(document).stem}-{slug}-animated.{self.options.format}")
        command = [engine_link.load_config().python, "-m", "engine", "animate", self.options.input_file]
        command += ["--layer", layer.get_id(), "-o", str(out), "-q"]
        for option in ("duration", "pace", "order", "background"):
            command += [f"--{option}", str(getattr(self.options, option))]
        env = {k: v for k, v in engine_environment(os.environ).items() if k != "PYTHONPATH"}  # not Inkscape's
        try:
            done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise inkex.AbortExtension(f"Animate Sketch could not run the engine's Python: {err}") from None
        if done.returncode != 0:
            said = "\n".join(line for line in done.stderr.splitlines() if line.startswith(("error:", "  fix:")))
            raise inkex.AbortExtension(f"Animate Sketch wrote nothing.\n{said or done.stderr.strip()[-800:]}")
        return f"The animation of '{label}' is in {out}"

    def _sketch_layer(self):
        """The sketch around the first selected stroke (its whole sketch layer where it has one), else
        the current layer; only a layer that holds paths."""
        for element in self.svg.selection.values():
            layers = [a for a in [element, *element.iterancestors()] if isinstance(a, inkex.Layer) and _strokes(a)]
            if layers:
                whole = [a for a in layers if a.get(PHOTO)]
                return whole[0] if whole else layers[0]
        current = self.svg.get_current_layer()
        if isinstance(current, inkex.Layer) and _strokes(current):
            return current
        raise SelectionError("Select a stroke of the sketch to animate (or make its layer the current layer).")


def _strokes(layer) -> bool:
    return any(True for _ in layer.descendants().filter(inkex.PathElement))


if __name__ == "__main__":
    AnimateSketch().run()
