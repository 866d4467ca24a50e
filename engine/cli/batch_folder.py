"""What `batch` keeps in its output folder: the state file of the jobs submitted and not yet written
(photo -> job id), and the lock a run holds on the folder. Torch-free."""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from bridge.atomic import write_atomic
from bridge.errors import InputError
from bridge.files import read_bounded

STATE_FILE = ".sketch-abstraction-batch.json"
LOCK_FILE = ".sketch-abstraction-batch.lock"  # held by the run writing into the folder
SUBMITTING = "submitting at "  # + time: the state of a photo whose job id a killed run may not have saved
STATE_BYTES = 16 * 2**20  # the state file holds a line per photo: far less than this


def _mark(value: object) -> bool:
    """Whether `value` is a state file's entry: a job id, or SUBMITTING and a time."""
    if not isinstance(value, str) or not value.startswith(SUBMITTING):
        return isinstance(value, str)
    try:
        float(value[len(SUBMITTING) :])
    except ValueError:
        return False
    return True


class State:
    """The jobs submitted and not yet written (photo -> job id, or SUBMITTING + time), in the output folder."""

    def __init__(self, out_dir: Path):
        """The state in `out_dir` (none if there is no file or it is damaged); InputError when the
        file is not a regular one (a FIFO there would block every run)."""
        self.path = out_dir / STATE_FILE
        self.jobs: dict[str, str] = {}
        if not os.path.lexists(self.path):
            return
        try:
            data = json.loads(read_bounded(self.path, "the batch state file", STATE_BYTES))
            self.jobs = {k: v for k, v in data.items() if isinstance(k, str) and _mark(v)}
        except (ValueError, AttributeError):
            pass

    def adopt(self, jobs: list[dict]) -> None:
        """Replace each SUBMITTING mark by the id of the job the engine took then (same photo name,
        created since, not fetched), if it took one: a run killed between the engine's reply and
        saving the id does not make the photo run twice."""
        for photo, mark in list(self.jobs.items()):
            if not mark.startswith(SUBMITTING):
                continue
            since, name = float(mark[len(SUBMITTING) :]), Path(photo).name
            taken = [
                job
                for job in jobs
                if job["name"] == name
                and job["created"] >= since
                and not job.get("fetched")
                and job["state"] in ("queued", "running", "done")
            ]
            if taken:
                self.jobs[photo] = taken[0]["job_id"]
            else:
                del self.jobs[photo]

    def set(self, photo: Path, job_id: str | None) -> None:
        if job_id is None:
            self.jobs.pop(str(photo), None)
        else:
            self.jobs[str(photo)] = job_id
        if self.jobs:
            write_atomic(self.path, json.dumps(self.jobs, indent=1).encode("utf-8"))
        else:
            self.path.unlink(missing_ok=True)


@contextlib.contextmanager
def folder_lock(out_dir: Path) -> Iterator[None]:
    """Hold `out_dir`'s lock file for the run: a second batch run on the folder is refused instead of
    computing the same photos again. POSIX only (Windows: no lock)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    path = out_dir / LOCK_FILE
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as err:
        raise InputError(f"cannot use {path}: {err.strerror}", "remove it, or pass another --out-dir") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InputError(f"{path} is not a regular file", "remove it, or pass another --out-dir")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise InputError(
                f"another batch run is writing to {out_dir}",
                "wait for it to finish (it writes every photo), or pass another --out-dir",
            ) from None
        yield
    finally:
        os.close(fd)
