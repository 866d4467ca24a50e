"""The engine round trip of every effect that has the engine draw: connect (starting the engine if
none runs), submit, remember what the engine owes, wait with the progress window, hand back what came.

Object Sketch, Scene Sketch (sketchabs.effect) and Refine Sketch differ only in what they submit
(`jobs`, which sees the engine's status first) and what they do with the results; the Run tab
(device, engine, remote connection file, time limit, window) and the way errors reach the designer
are the same for all. Every failure ends in `inkex.AbortExtension` with what to do, leaving the
document unchanged; success writes nothing to stderr (Inkscape would show it in a dialog, and a
headless run would hang on it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import inkex

from bridge.client import ClientError, JobFailed, JobResult
from bridge.errors import EngineError
from sketchabs import engine_link, gui, links, messages, progress
from sketchabs.images import Photo, SelectionError

READY_TIMEOUT_S = 180.0
T = TypeVar("T")


def abort_on_errors(run: Callable[[], T], effect: str = "the effect") -> T:
    """Run `run`, turning every error a user can act on into AbortExtension with a text that says
    what to do from inside Inkscape (sketchabs.messages)."""
    try:
        return run()
    except (SelectionError, engine_link.SetupError) as err:
        raise inkex.AbortExtension(str(err)) from None
    except (ClientError, EngineError) as err:
        fixes = messages.Fixes(config_or_none())
        raise inkex.AbortExtension(fixes.for_error(err.code, err.message, err.hint, effect)) from None


def runs_test_models(status: dict) -> bool:
    """Whether the engine whose status reply this is runs random test models (its sketches show
    placement, not drawing). The computing engine decides, not this computer's setup: a shared engine
    runs the models its administrator chose."""
    return bool(status["models"] != "openai")


def config_or_none() -> engine_link.EngineConfig:
    """The installed engine's set-up, or an empty one where it cannot be read (for messages)."""
    try:
        return engine_link.load_config()
    except engine_link.SetupError:
        return engine_link.EngineConfig("")


@dataclass(frozen=True)
class Job:
    """One request an effect submits, and what its result becomes."""

    photo: Photo
    request: tuple[dict, list]  # bridge.params.request_to_json: the message and its buffers
    title: str  # the result layer's name, without the test-models tag (added where the engine runs them)
    variation: int = 1  # its number among the photo's sketches of this kind
    replace: bool = False  # take the place of the photo's sketch with this number


@dataclass(frozen=True)
class Waited:
    """The round trip's end: every job submitted, and what became of it."""

    owed: list[engine_link.PendingJob]  # in the order of `jobs`
    results: dict[str, JobResult]  # by job id
    failures: dict[str, JobFailed]
    running: set[str]  # results that are sketches as they are now, their jobs kept running


class EngineEffect(inkex.EffectExtension):
    """An effect whose work the engine does. Subclasses set `kind` (the request kind,
    bridge.params.REQUESTS), `menu_name` and `tab` (the .inx notebook's first page), and say
    what to submit (`jobs`) and what to do with it (`run_effect`, which calls `round_trip`)."""

    kind = "sketch"
    menu_name = "the effect"
    tab = ""

    def add_arguments(self, pars: Any) -> None:
        """The Run tab, the same in every effect's .inx."""
        pars.add_argument("--tab", default=self.tab)
        pars.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
        pars.add_argument("--engine", default=engine_link.LOCAL, choices=(engine_link.LOCAL, engine_link.REMOTE))
        pars.add_argument("--remote", default="")
        pars.add_argument("--timeout", type=float, default=60.0)  # minutes
        pars.add_argument("--window", type=inkex.Boolean, default=True)

    def effect(self) -> None:
        abort_on_errors(self.run_effect, self.menu_name)
        links.restore(self.svg, self.options.input_file, engine_link.document_path())

    def run_effect(self) -> None:
        raise NotImplementedError

    def jobs(self, status: dict) -> list[Job]:
        """What to submit to the engine whose status reply `status` is (e.g. after showing what it
        costs there). May end the effect (the designer cancelled)."""
        raise NotImplementedError

    def submitted_and_returned(self, count: int) -> str:
        """What to say when `count` jobs were submitted without waiting for them (`waits` False)."""
        return messages.submitted(count)

    def round_trip(self, waits: bool = True, note: str = "") -> Waited:
        """Submit `jobs` to the engine the Run tab names and wait for them in the progress window
        (`note`: a setting to show in its title). From the moment they are submitted the jobs are
        remembered, so a wait given up loses nothing (Insert Finished Sketches brings them in).
        Without `waits` the effect ends once they are submitted, saying `submitted_and_returned`."""
        remote = engine_link.engine_choice(self.options.engine, self.options.remote)
        preview_every = progress.PREVIEW_EVERY_S if self.options.window and waits else None
        with engine_link.connect(self.options.device, READY_TIMEOUT_S, remote) as client:
            status = client.status()
            test_models = runs_test_models(status)
            owed = []
            for job in self.jobs(status):
                job_id, _position = client.submit(*job.request, job.photo.name, preview_every)
                owed.append(
                    engine_link.PendingJob(
                        job_id,
                        job.photo.element.get_id(),
                        engine_link.document_path(),
                        f"{job.title} [{messages.TEST_MODELS_TAG}]" if test_models else job.title,
                        job.photo.size,
                        time.time(),
                        self.kind,
                        job.variation,
                        job.replace,
                        remote,
                    )
                )
            engine_link.remember(owed)  # from here on, nothing submitted can be lost
            if not waits:
                gui.tell(self.submitted_and_returned(len(owed)), self.options.window)
            results, failures, running = progress.follow(
                client, owed, self.options.timeout * 60, self.options.window, test_models, note
            )
        return Waited(owed, results, failures, running)
