"""Jobs on a Ray cluster (`serve --workers ray` or `ray://HEAD:PORT`): the engine keeps its protocol,
queue and result store (engine.service.server) and hands each job to a Ray actor that holds the
models loaded: one actor per GPU of the cluster, or `cpu_actors` CPU actors where it has none.

Ray does the placement, the restarts and the process management: actors are created with
`max_restarts=-1` (Ray starts a dead one again, models and all), and a job whose actor dies
mid-job is run again on the next free actor (RETRIES times at most). A job that died never
finished, so none is run twice to completion. Progress is polled (`Worker.progress`, every
PROGRESS_INTERVAL_S while the job runs), not streamed: Ray Client (`ray://`) has no streaming
generators. Cancelling a job sets the flag its actor's progress callback checks (the actors take
three calls at once: the job, `progress` and `cancel`).

Ray is the optional `cluster` extra; without it `--workers ray` says how to install it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import threading
from typing import Any

from bridge.errors import Cancelled, EngineError
from engine.progress import Progress, ProgressCallback
from engine.service.log import log as _log
from engine.service.worker import PROGRESS_INTERVAL_S, run_checked_job, throttled

RETRIES = 2  # runs of a job whose actor died, after the first


class RayMissing(EngineError):
    code = "ray_missing"


class RemoteJobError(EngineError):
    """An EngineError raised in an actor, with its code (the class itself stays on the actor)."""

    def __init__(self, code: str, message: str, hint: str):
        super().__init__(message, hint)
        self.code = code


def import_ray():
    try:
        import ray
    except ImportError:
        raise RayMissing(
            "--workers ray needs Ray, which is not installed",
            "pip install 'sketch-abstraction[cluster]' (into the engine's environment), or serve without --workers",
        ) from None
    return ray


class Worker:
    """The actor: one runtime with its models loaded, running one job at a time."""

    def __init__(self, settings: dict[str, Any]):
        from engine.clip.models import RN101, VIT_B32
        from engine.runtime import Runtime

        self.runtime = Runtime.create(**settings)
        self.runtime.load(RN101, VIT_B32)
        self.cancelled = threading.Event()
        self.reports: queue.Queue[Progress] = queue.Queue()  # the running job's progress, not yet polled

    def ready(self) -> tuple[int, str]:
        return os.getpid(), self.runtime.describe()["device"]

    def cancel(self) -> None:
        self.cancelled.set()

    def progress(self) -> list[Progress]:
        """The progress reported since the last call (at most one every PROGRESS_INTERVAL_S, and the last)."""
        reports = []
        with contextlib.suppress(queue.Empty):
            while True:
                reports.append(self.reports.get_nowait())
        return reports

    def run(self, kind: str, request: Any, preview_every: float | None = None) -> tuple:
        """("done", JobOutput) or ("error", code, message, hint) or ("crash", text); progress meanwhile
        goes to `progress`."""
        self.cancelled.clear()
        self.progress()  # a killed job's leftovers (an actor restarted by Ray starts empty anyway)
        # A snapshot is built in the job's own thread on request; the reports cross processes without it
        # (a Ray engine answers snapshot requests "not evaluated yet": docs/inkscape.md, Insert it as it is now).
        progress = throttled(lambda p: self.reports.put(dataclasses.replace(p, snapshot=None)), self.cancelled)
        try:
            return ("done", run_checked_job(self.runtime, kind, request, progress, preview_every))
        except EngineError as err:
            return ("error", err.code, err.message, err.hint)
        except Exception as err:  # a bug or out of memory: the engine names it
            return ("crash", f"{type(err).__name__}: {err}")


class RayWorkers:
    """A pool of Worker actors; `run` is the engine server's run_job (called from one thread per actor)."""

    def __init__(self, address: str | None, settings: dict[str, Any], cpu_actors: int = 2):
        ray = self.ray = import_ray()
        # The actors are the engine's compute: Ray's default (niced workers) would starve them
        # behind anything else the machine runs. A cluster's workers take their own raylet's setting.
        os.environ.setdefault("RAY_worker_niceness", "0")
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        gpus = int(ray.cluster_resources().get("GPU", 0))
        count = gpus or cpu_actors
        settings = {**settings, "device": "cuda" if gpus else "cpu"}
        actor = ray.remote(num_gpus=1 if gpus else 0, num_cpus=1, max_restarts=-1, max_concurrency=3)(Worker)
        self.actors = [actor.remote(settings) for _ in range(count)]
        self.idle: queue.Queue[int] = queue.Queue()
        for index in range(count):
            self.idle.put(index)
        self.device = f"ray: {count} {'GPU' if gpus else 'CPU'} worker(s)"
        self.settings = settings
        self.pids: dict[int, int] = {}

    @property
    def size(self) -> int:
        return len(self.actors)

    def warm_up(self) -> None:
        """Wait until every actor has its models loaded."""
        for index, (pid, _device) in enumerate(self.ray.get([a.ready.remote() for a in self.actors])):
            self.pids[index] = pid
        _log(f"ray workers ready: {', '.join(f'{i} (pid {p})' for i, p in self.pids.items())}")

    def describe(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "models": self.settings["models"],
            "renderer": self.settings.get("renderer", "ours"),
            "loaded": ["RN101", "ViT-B-32"],
        }

    def run(self, kind: str, request: Any, progress: ProgressCallback, preview_every: float | None = None):
        """Run one job on a free actor; again on the next free one if its actor dies."""
        ray = self.ray
        for attempt in range(RETRIES + 1):
            index = self.idle.get()
            try:
                return self._run_on(index, kind, request, progress, preview_every)
            except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as err:
                _log(f"ray worker {index} died during a job ({type(err).__name__}); attempt {attempt + 1} of the job")
            finally:
                self.idle.put(index)  # a dead actor is restarted by Ray and serves again
        raise EngineError(
            f"the job's Ray worker died {RETRIES + 1} times",
            "see the engine's log; the job may need more memory than a worker has",
        )

    def _run_on(self, index: int, kind: str, request: Any, progress: ProgressCallback, preview_every: float | None):
        ray, actor = self.ray, self.actors[index]
        _log(f"job on ray worker {index} (pid {self._pid(index)})")
        outcome = actor.run.remote(kind, request, preview_every)
        cancelled = False
        while True:
            done, _ = ray.wait([outcome], timeout=PROGRESS_INTERVAL_S)
            # The outcome first: a dead actor raises here at once, where a call to it would wait for
            # Ray to restart it (models and all) before the job could go to another.
            item = ray.get(outcome) if done else None
            for report in ray.get(actor.progress.remote()):  # after the end too: the last report
                if not cancelled:
                    try:
                        progress(report)
                    except Cancelled:
                        cancelled = True
                        actor.cancel.remote()
            if item is not None:
                break
        if item[0] == "done":
            return item[1]
        if item[0] == "error":
            if item[1] == Cancelled.code:
                raise Cancelled(item[2], item[3])
            raise RemoteJobError(*item[1:])
        raise RuntimeError(item[1])

    def _pid(self, index: int) -> int | str:
        """The actor's process id now (it changes when Ray restarts it)."""
        try:
            self.pids[index] = self.ray.get(self.actors[index].ready.remote(), timeout=60)[0]
        except Exception:  # restarting: the job's own call will wait for it
            return "restarting"
        return self.pids[index]
