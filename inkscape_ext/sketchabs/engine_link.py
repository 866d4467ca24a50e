"""The extension's side of the engine: how to start it, and the jobs it is still owed.

`engine.json` next to the extension (written by install.py) records the engine's Python and the
models it should load. Jobs the extension submitted but did not insert (the user closed the
progress window, chose "submit and return", or the wait timed out) are remembered in the user's
data folder, one file per job, with the image they belong to, for "Insert Finished Sketches".
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bridge import connection
from bridge.atomic import write_atomic
from bridge.client import EngineClient
from bridge.launcher import engine_command, engine_environment
from bridge.protocol import valid_job_id
from sketchabs import messages

HERE = Path(__file__).resolve().parent.parent
CONFIG_FILE = HERE / "engine.json"
PENDING_FOLDER = "inkscape-pending"
LEGACY_PENDING_FILE = "inkscape-pending.json"  # one list for all jobs, in earlier versions


class SetupError(Exception):
    """The extension is not installed right; the message says how to fix it."""


@dataclass(frozen=True)
class EngineConfig:
    python: str  # the engine's own Python
    models: str = "openai"
    weights_dir: str | None = None  # passed to the engine (installs before weights were copied)
    install_py: str | None = None  # install.py as it ran, for messages that say how to fix the install
    installer_python: str | None = None  # the Python that ran it
    weights_folder: str | None = None  # where the engine looks for CLIP weights


def load_config() -> EngineConfig:
    try:
        data = json.loads(CONFIG_FILE.read_text(encoding="utf-8"))
        fields = ("models", "weights_dir", "install_py", "installer_python", "weights_folder")
        return EngineConfig(data["python"], **{k: data[k] for k in fields if data.get(k) is not None})
    except (OSError, ValueError, KeyError, TypeError):
        raise SetupError(messages.setup_broken(str(CONFIG_FILE))) from None


def test_models(config: EngineConfig) -> bool:
    """Whether the engine runs random test models (its sketches show placement, not drawing)."""
    return config.models != "openai"


LOCAL, REMOTE = "local", "remote"  # the Run tab's engine choice: this computer, or a remote connection file


def engine_choice(engine: str, remote_file: str) -> str:
    """The remote connection file to use ("" for this computer's engine), from the Run tab."""
    if engine != REMOTE:
        return ""
    if not remote_file.strip():
        raise SetupError(messages.REMOTE_FILE_MISSING)
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
            f"'{config.models}'. Choose {messages.STOP_ENGINE}, then run the effect again."
        )
    return client


def engine_finds(config: EngineConfig, modules: tuple[str, ...]) -> bool | None:
    """Whether the engine's Python finds every one of `modules` (without importing them: fast);
    None when that Python cannot be run at all."""
    check = f"import importlib.util, sys; sys.exit(any(importlib.util.find_spec(m) is None for m in {modules!r}))"
    try:
        done = subprocess.run(
            [config.python, "-c", check], capture_output=True, timeout=60, env=engine_environment(os.environ)
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.returncode == 0


def has_mask_extra(config: EngineConfig) -> bool:
    """Whether the engine has the automatic mask's package (onnxruntime, which runs U2-Net); True when
    that cannot be told here (starting the engine then says what is wrong)."""
    return engine_finds(config, ("onnxruntime",)) is not False


@dataclass(frozen=True)
class PendingJob:
    job_id: str
    image_id: str  # the <image> element's id in the document
    document: str  # the document's path ("" for an unsaved one)
    title: str  # the layer name to give the result
    size: tuple[int, int]  # the photo's pixel size, for placement
    submitted: float
    kind: str = "sketch"  # the request kind (bridge.params.REQUESTS): which of the photo's sketches it is
    variation: int = 1  # its number among the photo's sketches of this kind (seeds differ per number)
    replace: bool = False  # take the place of the photo's sketch with this number, if there is one
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
