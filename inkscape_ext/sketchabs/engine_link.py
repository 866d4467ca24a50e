"""The extension's side of the engine: how to start it, and the jobs it is still owed.

`engine.json` next to the extension (written by install.py) records the engine's Python and the
models it should load. Jobs the extension submitted but did not insert (the user closed the
progress window, chose "submit and return", or the wait timed out) are remembered in the user's
data folder with the image they belong to, for "Insert Finished Sketches".
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from bridge import connection
from bridge.atomic import write_atomic
from bridge.client import EngineClient, engine_command

HERE = Path(__file__).resolve().parent.parent
CONFIG_FILE = HERE / "engine.json"
PENDING_FILE = "inkscape-pending.json"


class SetupError(Exception):
    """The extension is not installed right; the message says how to fix it."""


@dataclass(frozen=True)
class EngineConfig:
    python: str
    models: str = "openai"
    weights_dir: str | None = None


def load_config() -> EngineConfig:
    try:
        data = json.loads(CONFIG_FILE.read_text(encoding="utf-8"))
        return EngineConfig(data["python"], data.get("models", "openai"), data.get("weights_dir"))
    except (OSError, ValueError, KeyError, TypeError):
        raise SetupError(
            f"The extension does not know where the engine is ({CONFIG_FILE} is missing or "
            "damaged). Run `python install.py` from the Sketch Abstraction folder again."
        ) from None


def connect(device: str, ready_timeout_s: float) -> EngineClient:
    """A client of the running engine, started with the recorded Python if none runs.

    Refuses an engine that runs other models than the installed ones, so that test models are
    never used where the real ones are expected.
    """
    config = load_config()
    command = engine_command(config.python, config.models, device, config.weights_dir)
    client = EngineClient.connect(start=command, ready_timeout_s=ready_timeout_s)
    running = client.status()["models"]
    if running != config.models:
        client.close()
        raise SetupError(
            f"The running engine uses '{running}' models, but this extension is set up for "
            f"'{config.models}'. Stop that engine (`sketch-abstraction stop`) and run the "
            "effect again."
        )
    return client


@dataclass(frozen=True)
class PendingJob:
    job_id: str
    image_id: str  # the <image> element's id in the document
    document: str  # the document's path ("" for an unsaved one)
    title: str  # the layer name to give the result
    size: tuple[int, int]  # the photo's pixel size, for placement
    submitted: float


def remember(jobs: list[PendingJob]) -> None:
    pending = _read_pending()
    pending.update({job.job_id: job for job in jobs})
    _write_pending(pending)


def forget(job_ids) -> None:
    pending = _read_pending()
    for job_id in job_ids:
        pending.pop(job_id, None)
    _write_pending(pending)


def owed_to(document: str, image_ids: set[str]) -> list[PendingJob]:
    """Remembered jobs for this document: same file, or (unsaved documents) an image id it has."""
    return sorted(
        (
            job
            for job in _read_pending().values()
            if job.image_id in image_ids and (job.document == document or not job.document)
        ),
        key=lambda job: job.submitted,
    )


def _read_pending() -> dict[str, PendingJob]:
    try:
        data = json.loads((connection.data_dir() / PENDING_FILE).read_text(encoding="utf-8"))
        return {k: PendingJob(**{**v, "size": tuple(v["size"])}) for k, v in data.items()}
    except (OSError, ValueError, TypeError, KeyError):
        return {}


def _write_pending(pending: dict[str, PendingJob]) -> None:
    data = json.dumps({k: vars(v) for k, v in pending.items()}).encode("utf-8")
    write_atomic(connection.data_dir() / PENDING_FILE, data)


def document_path() -> str:
    return os.environ.get("DOCUMENT_PATH", "")
