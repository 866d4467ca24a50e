"""Object Sketch and Scene Sketch: photos in, engine jobs out (sketchabs.engine_effect), layers back in.

The effects are thin: the engine does the work, validated by the engine's own torch-free request
classes (bridge.params, vendored next to the extension). A photo's sketch replaces its previous one
only while nobody touched that (sketchabs.placement); an edited one is kept and the new sketch goes
in as a variation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import inkex

from bridge.errors import EngineError
from bridge.params import MASK_AUTO, MASK_NONE, STYLE_PEN, STYLES, request_to_json
from bridge.sketchlayer import LABEL
from sketchabs import engine_link, estimate, gui, messages, progress
from sketchabs.engine_effect import EngineEffect, Job, config_or_none
from sketchabs.fingerprint import FINGERPRINT
from sketchabs.images import Photo, SelectionError, read_photo, short_label, target_images
from sketchabs.mask import mask_png
from sketchabs.placement import SketchLink, insert_sketch, pixel_to_document, replaceable, sketches_of

MASK_PATH = "path"
REPLACE, VARIATION = "replace", "variation"
VARIATION_SEED_STEP = 100_003  # seeds of variation v start at (v - 1) x this: never another's seeds


@dataclass(frozen=True)
class Prepared:
    """The photos an effect sketches, as engine jobs, and what to say when they are in."""

    jobs: list[Job]
    kept: list[str]  # per job: the name of the photo's edited sketch kept instead of replaced ("": none)
    skipped: list[str]  # the photos left out, each named with why


class SketchEffect(EngineEffect):
    """Base of the object and scene effects: subclasses say how options become a request."""

    kind = "sketch"  # the request kind (bridge.params.REQUESTS)
    menu_name = "Object Sketch"
    tab = "sketch"
    title_prefix = "Sketch of"

    def add_arguments(self, pars):
        super().add_arguments(pars)
        pars.add_argument("--scope", default="selected", choices=("selected", "layer"))
        pars.add_argument("--mask", default=MASK_NONE, choices=(MASK_NONE, MASK_AUTO, MASK_PATH))
        pars.add_argument("--width", type=float, default=0.0)
        pars.add_argument("--color", type=inkex.Color, default=inkex.Color("#000000"))
        pars.add_argument("--style", default=STYLE_PEN, choices=STYLES)
        pars.add_argument("--detach", type=inkex.Boolean, default=False)
        pars.add_argument("--rerun", default=REPLACE, choices=(REPLACE, VARIATION))

    def request(self, photo: Photo, mask, variation: int):
        """The validated engine request for one photo (bridge.params); InputError if not valid.
        `variation` (1, 2, ...) picks the seeds: each variation of a photo's sketch has its own."""
        raise NotImplementedError

    def offer(self, status: dict, photos: int) -> estimate.Offer | None:
        """What the job costs on the engine whose status reply `status` is (None: not known)."""
        return None

    def use_faster(self) -> None:
        """Switch to the faster preset that `offer` offers."""

    @staticmethod
    def seeds(count: int, variation: int) -> tuple[int, ...]:
        """`count` seeds, other ones for every variation (variation 1: the engine's usual 0, 1000, ...)."""
        return tuple(1000 * i + VARIATION_SEED_STEP * (variation - 1) for i in range(max(1, count)))

    def run_effect(self) -> None:
        self.config = engine_link.load_config()
        self.prepared = self._prepare(target_images(self.svg, self.options.scope), self.config)
        if self.options.mask == MASK_AUTO and not engine_link.has_mask_extra(self.config):
            raise inkex.AbortExtension(messages.Fixes(self.config).missing_mask(self.kind))
        # Without GTK there is no window to wait in with a Stop button: the engine runs the jobs in the
        # background, where Stop Sketches can cancel them, instead of Inkscape blocked until they end.
        self.no_toolkit = self.options.window and not self.options.detach and gui.missing_toolkit()
        self.waits = not (self.options.detach or self.no_toolkit)
        note = messages.NEW_VARIATION_NOTE if self.options.rerun == VARIATION else ""
        waited = self.round_trip(self.waits, note)
        kept = [messages.kept_edited(name, job.title) for job, name in zip(waited.owed, self.prepared.kept) if name]
        if waited.running:
            kept.append(messages.inserted_now(len(waited.running)))
        insert_results(
            self.svg,
            waited.owed,
            waited.results,
            waited.failures,
            [*kept, *self.prepared.skipped],
            self.options.window,
            waited.running,
        )

    def jobs(self, status: dict) -> list[Job]:
        if self.waits:  # a long job: its cost first (start, faster, cancel)
            choice = estimate.ask(self.offer(status, len(self.prepared.jobs)), self.options.window)
            if choice == estimate.CANCEL:
                progress.end_quietly()
            if choice == estimate.FASTER:
                self.use_faster()
                self.prepared = self._prepare([job.photo.element for job in self.prepared.jobs], self.config)
        return self.prepared.jobs

    def submitted_and_returned(self, count: int) -> str:
        said = messages.submitted_without_window(count) if self.no_toolkit else messages.submitted(count)
        return "\n\n".join([said, *self.prepared.skipped])

    def _prepare(self, elements, config) -> Prepared:
        """Each photo read, planned (`_plan`) and made an engine job. Of several photos, one that
        cannot be read or sketched with these settings is skipped (named, with why, at the end); a
        single photo's problem aborts."""
        prepared = Prepared([], [], [])
        for element in elements:
            try:
                photo = read_photo(element, self.options.input_file)
                variation, replace, kept = self._plan(photo)
                request = request_to_json(self.request(photo, self._mask(photo), variation))
            except (SelectionError, EngineError) as err:
                if len(elements) == 1:
                    raise
                why = (
                    str(err)
                    if isinstance(err, SelectionError)
                    else messages.Fixes(config).for_error(err.code, err.message, err.hint, self.menu_name, self.kind)
                )
                prepared.skipped.append(messages.skipped(short_label(element.label or element.get_id()), why))
                continue
            prepared.jobs.append(Job(photo, request, self.title(photo, variation), variation, replace))
            prepared.kept.append(kept)
        if not prepared.jobs:
            raise inkex.AbortExtension("\n\n".join(prepared.skipped))
        return prepared

    def _plan(self, photo: Photo) -> tuple[int, bool, str]:
        """(variation, replace, kept): the photo's latest sketch of this kind is replaced (same seeds,
        so only changed settings change it) if nobody touched it since it was inserted; an edited,
        refined or locked one is kept (its name is `kept`) and, as for New variation, the new sketch
        gets the next number."""
        photo_id = photo.element.get_id()
        existing = sketches_of(self.svg, photo_id, self.kind)
        if not existing:
            return 1, False, ""
        latest = max(existing)
        if self.options.rerun != REPLACE:
            return latest + 1, False, ""
        if replaceable(self.svg, SketchLink(photo_id, self.kind, latest)) is not None:
            return latest, True, ""
        return latest + 1, False, existing[latest].get(LABEL) or existing[latest].get_id()

    def title(self, photo: Photo, variation: int) -> str:
        title = f"{self.title_prefix} {photo.name}"
        return f"{title} (variation {variation})" if variation > 1 else title

    def _mask(self, photo: Photo):
        if self.options.mask != MASK_PATH:
            return self.options.mask
        others = [el for el in self.svg.selection.values() if not isinstance(el, inkex.Image)]
        shapes = [el for el in others if _maskable(el) and _overlaps(el, photo.element)]
        if not shapes:
            raise SelectionError(messages.mask_needs_path(photo.name, [_what(el) for el in others], self.kind))
        return mask_png(shapes, pixel_to_document(photo.element, photo.size), photo.size)

    def stroke_options(self) -> dict:
        """Width (None = the engine's default), colour and style, as the requests take them."""
        rgb = self.options.color.to_rgb()
        return {"width": self.options.width or None, "color": str(rgb), "style": self.options.style}


def insert_results(svg, owed, results, failures, notes=(), window: bool = True, running=frozenset()) -> None:
    """Insert what finished; forget what was inserted or failed; report failures after success, and
    `notes` (photos skipped, edited sketches kept instead of replaced) plus the edited sketches found
    kept only now, as the results come in. A stopped job is no failure; when nothing is inserted and
    nothing failed, the effect ends quietly. `running`: jobs whose result is their sketch as it is
    now while they run on: remembered to replace it when they finish (the replace rule decides)."""
    lost, kept, inserted, placed = [], list(notes), 0, {}
    for job in owed:
        if job.job_id not in results:
            continue
        photo = svg.getElementById(job.image_id)
        if photo is None:
            lost.append(messages.failed(job.title, "its photo is no longer in this document, so it was not inserted"))
            continue
        link, title, replace = SketchLink(job.image_id, job.kind, job.variation), job.title, job.replace
        existing = sketches_of(svg, job.image_id, job.kind)
        if replace and job.variation in existing and replaceable(svg, link) is None:  # edited during the wait
            link = SketchLink(job.image_id, job.kind, max(existing) + 1)
            title, replace = messages.with_variation(job.title, link.variation), False
            old = existing[job.variation]
            kept.append(messages.kept_edited(old.get(LABEL) or old.get_id(), title))
        before = replaceable(svg, link) if replace else None
        top = insert_sketch(svg, results[job.job_id].svg, photo, job.size, title, link, replace)
        placed[job.job_id] = {"variation": link.variation, "title": title}
        if before is not None and before.get(FINGERPRINT) == top.get(FINGERPRINT):
            kept.append(messages.identical(title))
        inserted += 1
    engine_link.forget([job_id for job_id in [*results, *failures] if job_id not in running])
    engine_link.remember(  # the finished sketch takes the place of the one inserted as it is now
        [
            dataclasses.replace(job, **placed[job.job_id], replace=True)
            for job in owed
            if job.job_id in running and job.job_id in placed
        ]
    )
    failures = {job_id: err for job_id, err in failures.items() if err.code != "cancelled"}  # stops: not errors
    if not inserted and not failures and not lost:
        progress.end_quietly()
    texts = lost + [
        messages.failed(
            job.title,
            messages.Fixes(config_or_none()).for_error(
                failures[job.job_id].code, failures[job.job_id].message, failures[job.job_id].hint
            ),
        )
        for job in owed
        if job.job_id in failures
    ]
    if texts and not inserted:
        raise inkex.AbortExtension("\n\n".join(texts))
    if texts:  # some sketches were inserted; say which were not (a dialog after the effect)
        inkex.errormsg(messages.some_failed(texts))
    if kept:
        gui.inform("\n\n".join(kept), window)


def _maskable(element) -> bool:
    return isinstance(element, inkex.ShapeElement) and not isinstance(
        element, (inkex.Image, inkex.Group, inkex.TextElement, inkex.FlowRoot)
    )


def _what(element) -> str:
    """What a selected object is, in the user's words."""
    if isinstance(element, (inkex.TextElement, inkex.FlowRoot)):
        return "text"
    if isinstance(element, inkex.Group):
        return "group"
    return {"rect": "rectangle", "path": "path", "circle": "circle", "ellipse": "ellipse"}.get(element.TAG, element.TAG)


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
