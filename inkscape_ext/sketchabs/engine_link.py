"""The extension's side of the engine: how to start it, and the jobs it is still owed.

`engine.json` next to the extension (written by install.py) records the engine's Python and the
models it should load. Jobs the extension submitted but did not insert (the user closed the
progress window, chose "submit and return", or the wait timed out) are remembered in the user's
data folder, one file per job, with the image they belong to, for "Insert Finished Sketches".
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from bridge import connection
from bridge.atomic import write_atomic
from bridge.client import EngineClient, engine_command
from bridge.protocol import valid_job_id

HERE = Path(__file__).resolve().parent.parent
CONFIG_FILE = HERE / "engine.json"
PENDING_FOLDER = "inkscape-pending"
LEGACY_PENDING_FILE = "inkscape-pending.json"  # one list for all jobs, in earlier versions


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


LOCAL, REMOTE = "local", "remote"  # the Run tab's engine choice: this computer, or a remote connection file


def engine_choice(engine: str, remote_file: str) -> str:
    """The remote connection file to use ("" for this computer's engine), from the Run tab."""
    if engine != REMOTE:
        return ""
    if not remote_file.strip():
        raise SetupError(
            "The Run tab says to use a remote engine, but names no connection file. Choose the file "
            "your studio's administrator gave you (`sketch-abstraction keys export`), or choose this computer."
        )
    return os.path.expanduser(remote_file.strip())


def connect(device: str, ready_timeout_s: float, remote: str = "") -> EngineClient:
    """A client of the running engine, started with the recorded Python if none runs; with
    `remote` (a remote connection file), of that machine's engine, which runs the models its
    administrator chose.

    Refuses a local engine that runs other models than the installed ones, so that test models are
    never used where the real ones are expected.
    """
    if remote:
        return EngineClient.connect(remote=remote, ready_timeout_s=ready_timeout_s)
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
    remote: str = ""  # the remote connection file of the engine that has it; "": this computer's


def remember(jobs: list[PendingJob]) -> None:
    folder = _pending_folder()
    for job in jobs:
        write_atomic(folder / f"{job.job_id}.json", json.dumps(vars(job)).encode("utf-8"), mode=0o600)


def forget(job_ids) -> None:
    folder = _pending_folder()
    for job_id in job_ids:
        if valid_job_id(job_id):
            (folder / f"{job_id}.json").unlink(missing_ok=True)


def owed_to(document: str, image_ids: set[str]) -> list[PendingJob]:
    """Remembered jobs for this document: same file, or (unsaved documents) an image id it has."""
    return sorted(
        (
            job
            for job in _read_pending()
            if job.image_id in image_ids and (job.document == document or not job.document)
        ),
        key=lambda job: job.submitted,
    )


def _pending_folder() -> Path:
    """One file per job, so that effects running at once (two Inkscape windows) never overwrite each
    other's list; private, since the records name the user's documents."""
    folder = connection.private_folder(connection.data_dir() / PENDING_FOLDER)
    _adopt_legacy_list(folder)
    return folder


def _read_pending() -> list[PendingJob]:
    jobs = []
    for path in _pending_folder().glob("*.json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            jobs.append(PendingJob(**{**data, "size": tuple(data["size"])}))
        except (OSError, ValueError, TypeError, KeyError):
            continue  # deleted meanwhile (inserted by another window), or damaged
    return jobs


def _adopt_legacy_list(folder: Path) -> None:
    """Move the jobs of the single list earlier versions kept into the folder, once."""
    legacy = connection.data_dir() / LEGACY_PENDING_FILE
    try:
        entries = json.loads(legacy.read_text(encoding="utf-8")).values()
    except (OSError, ValueError, AttributeError):
        return
    for entry in entries:
        if isinstance(entry, dict) and valid_job_id(entry.get("job_id")):
            write_atomic(folder / f"{entry['job_id']}.json", json.dumps(entry).encode("utf-8"), mode=0o600)
    legacy.unlink(missing_ok=True)


def document_path() -> str:
    return os.environ.get("DOCUMENT_PATH", "")
