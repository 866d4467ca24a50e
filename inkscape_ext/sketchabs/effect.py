"""What every Sketch Abstraction effect does: photos in, engine jobs out, layers back in.

The effects are thin: the engine does the work, validated by the engine's own torch-free request
classes (bridge.params, vendored next to the extension). Every failure ends in
`inkex.AbortExtension` with what to do, leaving the document unchanged; success writes nothing to
stderr (Inkscape would show it in a dialog, and a headless run would hang on it).
"""

from __future__ import annotations

import dataclasses
import time

import inkex

from bridge.client import ClientError
from bridge.errors import EngineError
from bridge.params import MASK_AUTO, MASK_NONE, STYLE_PEN, STYLES, request_to_json
from sketchabs import engine_link, estimate, gui, links, messages, progress
from sketchabs.fingerprint import FINGERPRINT
from sketchabs.images import Photo, SelectionError, read_photo, short_label, target_images
from sketchabs.mask import mask_png
from sketchabs.placement import SketchLink, insert_sketch, pixel_to_document, replaceable, sketches_of

MASK_PATH = "path"
READY_TIMEOUT_S = 180.0
REPLACE, VARIATION = "replace", "variation"
VARIATION_SEED_STEP = 100_003  # seeds of variation v start at (v - 1) x this: never another's seeds


def abort_on_errors(run, effect: str = "the effect"):
    """Run `run`, turning every error a user can act on into AbortExtension with a text that says
    what to do from inside Inkscape (sketchabs.messages)."""
    try:
        return run()
    except (SelectionError, engine_link.SetupError) as err:
        raise inkex.AbortExtension(str(err)) from None
    except (ClientError, EngineError) as err:
        fixes = messages.Fixes(_config_or_none())
        raise inkex.AbortExtension(fixes.for_error(err.code, err.message, err.hint, effect)) from None


def runs_test_models(status: dict) -> bool:
    """Whether the engine whose status reply this is runs random test models (its sketches show
    placement, not drawing). The computing engine decides, not this computer's setup: a shared engine
    runs the models its administrator chose."""
    return status["models"] != "openai"


def _config_or_none():
    try:
        return engine_link.load_config()
    except engine_link.SetupError:
        return engine_link.EngineConfig("")


class SketchEffect(inkex.EffectExtension):
    """Base of the object and scene effects: subclasses say how options become a request."""

    kind = "sketch"  # the request kind (bridge.params.REQUESTS)
    menu_name = "Object Sketch"
    title_prefix = "Sketch of"

    def add_arguments(self, pars):
        pars.add_argument("--tab", default="sketch")
        pars.add_argument("--scope", default="selected", choices=("selected", "layer"))
        pars.add_argument("--mask", default=MASK_NONE, choices=(MASK_NONE, MASK_AUTO, MASK_PATH))
        pars.add_argument("--width", type=float, default=0.0)
        pars.add_argument("--color", type=inkex.Color, default=inkex.Color("#000000"))
        pars.add_argument("--style", default=STYLE_PEN, choices=STYLES)
        pars.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
        pars.add_argument("--engine", default=engine_link.LOCAL, choices=(engine_link.LOCAL, engine_link.REMOTE))
        pars.add_argument("--remote", default="")
        pars.add_argument("--timeout", type=float, default=60.0)  # minutes
        pars.add_argument("--detach", type=inkex.Boolean, default=False)
        pars.add_argument("--window", type=inkex.Boolean, default=True)
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

    def effect(self):
        abort_on_errors(self._sketch, self.menu_name)
        links.restore(self.svg, self.options.input_file, engine_link.document_path())

    def _sketch(self) -> None:
        config = engine_link.load_config()
        photos, plans, jobs, skipped = self._prepare(target_images(self.svg, self.options.scope), config)
        if self.options.mask == MASK_AUTO and not engine_link.has_mask_extra(config):
            raise inkex.AbortExtension(messages.Fixes(config).missing_mask(self.kind))
        # Without GTK there is no window to wait in with a Stop button: the engine runs the jobs in the
        # background, where Stop Sketches can cancel them, instead of Inkscape blocked until they end.
        no_toolkit = self.options.window and not self.options.detach and gui.missing_toolkit()
        detach = self.options.detach or no_toolkit
        preview_every = progress.PREVIEW_EVERY_S if self.options.window and not detach else None
        remote = engine_link.engine_choice(self.options.engine, self.options.remote)
        with engine_link.connect(self.options.device, READY_TIMEOUT_S, remote) as client:
            status = client.status()
            test_models = runs_test_models(status)
            if not detach:  # a long job: its cost first (start, faster, cancel)
                choice = estimate.ask(self.offer(status, len(photos)), self.options.window)
                if choice == estimate.CANCEL:
                    progress.end_quietly()
                if choice == estimate.FASTER:
                    self.use_faster()
                    photos, plans, jobs, skipped = self._prepare([p.element for p in photos], config)
            owed = []
            for photo, (job, buffers), (variation, replace, _) in zip(photos, jobs, plans):
                job_id, _position = client.submit(job, buffers, photo.name, preview_every)
                owed.append(
                    engine_link.PendingJob(
                        job_id,
                        photo.element.get_id(),
                        engine_link.document_path(),
                        self.title(photo, variation, test_models),
                        photo.size,
                        time.time(),
                        self.kind,
                        variation,
                        replace,
                        remote,
                    )
                )
            engine_link.remember(owed)  # from here on, nothing submitted can be lost
            if detach:
                said = messages.submitted_without_window(len(owed)) if no_toolkit else messages.submitted(len(owed))
                gui.tell("\n\n".join([said, *skipped]), self.options.window)
            note = messages.NEW_VARIATION_NOTE if self.options.rerun == VARIATION else ""
            results, failures, running = progress.follow(
                client, owed, self.options.timeout * 60, self.options.window, test_models, note
            )
        kept = [messages.kept_edited(name, job.title) for job, (_, _, name) in zip(owed, plans) if name]
        if running:
            kept.append(messages.inserted_now(len(running)))
        insert_results(self.svg, owed, results, failures, [*kept, *skipped], self.options.window, running)

    def _prepare(self, elements, config):
        """(photos, plans, requests, skipped): each photo read, its plan (`_plan`) and its engine
        request. Of several photos, one that cannot be read or sketched with these settings is skipped
        (`skipped`: what to say at the end, naming it and why); a single photo's problem aborts."""
        photos, plans, jobs, skipped = [], [], [], []
        for element in elements:
            try:
                photo = read_photo(element, self.options.input_file)
                plan = self._plan(photo)
                job = request_to_json(self.request(photo, self._mask(photo), plan[0]))
            except (SelectionError, EngineError) as err:
                if len(elements) == 1:
                    raise
                why = (
                    str(err)
                    if isinstance(err, SelectionError)
                    else messages.Fixes(config).for_error(err.code, err.message, err.hint, self.menu_name, self.kind)
                )
                skipped.append(messages.skipped(short_label(element.label or element.get_id()), why))
                continue
            photos.append(photo)
            plans.append(plan)
            jobs.append(job)
        if not photos:
            raise inkex.AbortExtension("\n\n".join(skipped))
        return photos, plans, jobs, skipped

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
        return latest + 1, False, existing[latest].get(inkex.addNS("label", "inkscape")) or existing[latest].get_id()

    def title(self, photo: Photo, variation: int, test_models: bool) -> str:
        title = f"{self.title_prefix} {photo.name}"
        if variation > 1:
            title += f" (variation {variation})"
        return f"{title} [{messages.TEST_MODELS_TAG}]" if test_models else title

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
            kept.append(messages.kept_edited(old.get(inkex.addNS("label", "inkscape")) or old.get_id(), title))
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
            messages.Fixes(_config_or_none()).for_error(
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
