"""What every Sketch Abstraction effect does: photos in, engine jobs out, layers back in.

The effects are thin: the engine does the work, validated by the engine's own torch-free request
classes (bridge.params, vendored next to the extension). Every failure ends in
`inkex.AbortExtension` with what to do, leaving the document unchanged; success writes nothing to
stderr (Inkscape would show it in a dialog, and a headless run would hang on it).
"""

from __future__ import annotations

import time

import inkex

from bridge.client import ClientError
from bridge.errors import EngineError
from bridge.params import MASK_AUTO, MASK_NONE, request_to_json
from sketchabs import engine_link, progress
from sketchabs.images import Photo, SelectionError, read_photo, target_images
from sketchabs.mask import mask_png
from sketchabs.placement import insert_sketch, pixel_to_document

MASK_PATH = "path"
READY_TIMEOUT_S = 180.0


def abort_on_errors(run):
    """Run `run`, turning every error a user can act on into AbortExtension."""
    try:
        return run()
    except (SelectionError, engine_link.SetupError) as err:
        raise inkex.AbortExtension(str(err)) from None
    except (ClientError, EngineError) as err:
        raise inkex.AbortExtension(f"{err.message}\n\nWhat to do: {err.hint}" if err.hint else err.message) from None


class SketchEffect(inkex.EffectExtension):
    """Base of the object and scene effects: subclasses say how options become a request."""

    def add_arguments(self, pars):
        pars.add_argument("--tab", default="sketch")
        pars.add_argument("--scope", default="selected", choices=("selected", "layer"))
        pars.add_argument("--mask", default=MASK_NONE, choices=(MASK_NONE, MASK_AUTO, MASK_PATH))
        pars.add_argument("--width", type=float, default=0.0)
        pars.add_argument("--color", type=inkex.Color, default=inkex.Color("#000000"))
        pars.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
        pars.add_argument("--engine", default=engine_link.LOCAL, choices=(engine_link.LOCAL, engine_link.REMOTE))
        pars.add_argument("--remote", default="")
        pars.add_argument("--timeout", type=float, default=60.0)  # minutes
        pars.add_argument("--detach", type=inkex.Boolean, default=False)
        pars.add_argument("--window", type=inkex.Boolean, default=True)

    def request(self, photo: Photo, mask):
        """The validated engine request for one photo (bridge.params); InputError if not valid."""
        raise NotImplementedError

    def effect(self):
        abort_on_errors(self._sketch)

    def _sketch(self) -> None:
        photos = [read_photo(el, self.options.input_file) for el in target_images(self.svg, self.options.scope)]
        jobs = [request_to_json(self.request(photo, self._mask(photo))) for photo in photos]
        remote = engine_link.engine_choice(self.options.engine, self.options.remote)
        with engine_link.connect(self.options.device, READY_TIMEOUT_S, remote) as client:
            owed = []
            for photo, (job, buffers) in zip(photos, jobs):
                job_id, _position = client.submit(job, buffers, photo.name)
                owed.append(
                    engine_link.PendingJob(
                        job_id,
                        photo.element.get_id(),
                        engine_link.document_path(),
                        self.title(photo),
                        photo.size,
                        time.time(),
                        remote,
                    )
                )
            engine_link.remember(owed)  # from here on, nothing submitted can be lost
            if self.options.detach:
                raise inkex.AbortExtension(
                    f"Submitted {len(owed)} job(s) to the engine. When they are done, choose "
                    "Extensions > Sketch Abstraction > Insert Finished Sketches."
                )
            results, failures = progress.follow(client, owed, self.options.timeout * 60, self.options.window)
        insert_results(self.svg, owed, results, failures)

    def title(self, photo: Photo) -> str:
        return f"Sketch of {photo.name}"

    def _mask(self, photo: Photo):
        if self.options.mask != MASK_PATH:
            return self.options.mask
        shapes = [
            el
            for el in self.svg.selection.values()
            if isinstance(el, inkex.ShapeElement)
            and not isinstance(el, (inkex.Image, inkex.Group))
            and _overlaps(el, photo.element)
        ]
        if not shapes:
            raise SelectionError(
                f"'Use a selected path as the mask' needs a path or shape drawn over "
                f"'{photo.name}' and selected together with it."
            )
        return mask_png(shapes, pixel_to_document(photo.element, photo.size), photo.size)

    def stroke_options(self) -> dict:
        """Width (None = the engine's default) and colour, as the requests take them."""
        rgb = self.options.color.to_rgb()
        return {"width": self.options.width or None, "color": str(rgb)}


def insert_results(svg, owed, results, failures) -> None:
    """Insert what finished; forget what was inserted or failed; report failures after success."""
    for job in owed:
        if job.job_id in results:
            insert_sketch(svg, results[job.job_id].svg, svg.getElementById(job.image_id), job.size, job.title)
    engine_link.forget([*results, *failures])
    messages = [
        f"{job.title}: {failures[job.job_id].message}. {failures[job.job_id].hint}"
        for job in owed
        if job.job_id in failures
    ]
    if messages and not results:
        raise inkex.AbortExtension("\n\n".join(messages))
    if messages:  # some sketches were inserted; say which were not (a dialog after the effect)
        inkex.errormsg("Some sketches failed:\n\n" + "\n\n".join(messages))


def _overlaps(shape, image) -> bool:
    a, b = shape.bounding_box(transform=True), image.bounding_box(transform=True)
    return (
        a is not None
        and b is not None
        and a.x.minimum < b.x.maximum
        and b.x.minimum < a.x.maximum
        and a.y.minimum < b.y.maximum
        and b.y.minimum < a.y.maximum
    )
