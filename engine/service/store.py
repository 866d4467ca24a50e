"""The engine's job records and finished results, on disk so that nothing is lost.

Each job is `<id>.json` (its record) and, once done, `<id>.svg`, in `<data dir>/results` (0700; the
files 0600). The SVG is written before the record says "done", each atomically, so a crash at any
point leaves either no result or a whole one (and at most a temp file, which pruning removes). A
job the engine was running or queueing when it stopped is "interrupted" at the next start. Results
stay until fetched and `keep_fetched_s` after; unfetched ones `keep_unfetched_s`.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bridge.atomic import write_atomic
from bridge.connection import private_folder
from bridge.errors import EngineError

STALE_TEMP_S = 3600.0  # a temp file this old belongs to no write under way (a write takes milliseconds)
PRIVATE = 0o600  # records name the user's photos; SVGs are their sketches: no one else reads them
LOCAL_OWNER = "local"  # the owner of jobs from this machine; a remote client's jobs: its public key (Z85)


class StoreError(EngineError):
    """The disk refused a record or a result (full, read-only, deleted under the engine's feet)."""

    code = "storage_error"


def _reason(err: Exception) -> str:
    return err.strerror if isinstance(err, OSError) and err.strerror else str(err)


@dataclass
class JobRecord:
    job_id: str
    name: str  # what the user called it (the image's file name)
    kind: str  # "sketch" or "scene"
    state: str  # one of bridge.protocol.JOB_STATES
    created: float
    finished: float | None = None
    fetched: float | None = None
    seconds: float | None = None  # the engine's computing time
    notes: list[str] = field(default_factory=list)
    error: dict[str, Any] | None = None  # error content (code, message, hint) when state is "error"
    owner: str = LOCAL_OWNER  # the identity that submitted it: only it sees, fetches or cancels it

    def info(self, position: int | None = None) -> dict[str, Any]:
        """The job as list_reply and fetch_reply show it."""
        info = {k: v for k, v in asdict(self).items() if v is not None and k != "owner"}
        if position is not None:
            info["position"] = position
        return info


class ResultStore:
    def __init__(self, folder: Path, keep_fetched_s: float = 86_400.0, keep_unfetched_s: float = 30 * 86_400.0):
        self.folder = private_folder(folder)
        self.keep_fetched_s, self.keep_unfetched_s = keep_fetched_s, keep_unfetched_s

    def load(self) -> dict[str, JobRecord]:
        """Every stored record; ones left queued or running by a previous engine become interrupted.
        Files an older version left readable by others become private."""
        records = {}
        self._remove_temp_files(older_than=None)  # no write is under way before the engine serves
        for path in self.folder.iterdir():
            if path.suffix in (".json", ".svg") and path.stat().st_mode & 0o077:
                path.chmod(0o600)
        for path in self.folder.glob("*.json"):
            try:
                record = JobRecord(**json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, TypeError):
                continue  # a damaged record is not worth stopping the engine for
            if record.state in ("queued", "running"):
                record.state, record.finished = "interrupted", time.time()
                record.error = {
                    "code": "interrupted",
                    "message": "the engine stopped before this job finished",
                    "hint": "submit the image again",
                }
                with contextlib.suppress(StoreError):  # in memory it is interrupted all the same
                    self.save(record)
            records[record.job_id] = record
        return records

    def save(self, record: JobRecord, svg: bytes | None = None) -> None:
        """Store the record (and its SVG first); StoreError when the disk refuses, leaving no SVG
        behind that a record does not describe."""
        svg_path = self.folder / f"{record.job_id}.svg"
        try:
            if svg is not None:
                write_atomic(svg_path, svg, mode=PRIVATE)
            record_json = json.dumps(asdict(record)).encode("utf-8")
            write_atomic(self.folder / f"{record.job_id}.json", record_json, mode=PRIVATE)
        except (OSError, EngineError) as err:
            if svg is not None:
                svg_path.unlink(missing_ok=True)
            raise StoreError(
                f"the engine cannot store job {record.job_id} in {self.folder}: {_reason(err)}",
                "free some disk space there (or fix its permissions), then submit the image again",
            ) from None

    def svg(self, job_id: str) -> bytes:
        try:
            return (self.folder / f"{job_id}.svg").read_bytes()
        except OSError as err:
            raise StoreError(
                f"the result of job {job_id} cannot be read from {self.folder}: {_reason(err)}",
                "submit the image again",
            ) from None

    def prune(self, records: dict[str, JobRecord], now: float | None = None) -> list[str]:
        """Delete finished jobs past their keeping time, and temp files a killed write left; return
        the ids of the jobs deleted."""
        now = time.time() if now is None else now
        self._remove_temp_files(older_than=now - STALE_TEMP_S)
        gone = []
        for record in list(records.values()):
            if record.finished is None:
                continue
            expired = (record.fetched is not None and now - record.fetched > self.keep_fetched_s) or (
                now - record.finished > self.keep_unfetched_s
            )
            if expired:
                for suffix in (".json", ".svg"):
                    (self.folder / f"{record.job_id}{suffix}").unlink(missing_ok=True)
                del records[record.job_id]
                gone.append(record.job_id)
        return gone

    def _remove_temp_files(self, older_than: float | None) -> None:
        """Delete the temp files of writes that never finished (bridge.atomic names them .NAME.*.tmp)."""
        for path in self.folder.glob(".*.tmp"):
            try:
                if older_than is None or path.stat().st_mtime < older_than:
                    path.unlink()
            except FileNotFoundError:
                pass
