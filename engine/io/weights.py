"""Where the scene models' weight files (U2-Net, LaMa) come from: found, cached or downloaded exactly
as CLIP's (engine/clip/models.py), and named all at once when some are missing.

A file is looked for in `--weights-dir` when given (and nowhere else), else in the engine's weights
cache (bridge.connection.weights_dir, the folder CLIP's weights go to); when it is not there it is
downloaded into the cache, checked against its published MD5, unless SKETCH_ABSTRACTION_OFFLINE is
set. One folder holds every model's weights, so one message can say where to put them all.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

from bridge.errors import WeightsMissing
from engine.clip.models import OFFLINE_ENV, cache_dir


@dataclass(frozen=True)
class WeightsFile:
    filename: str  # as published, and as looked for in the folders
    size: str
    url: str
    md5: str

    @property
    def named(self) -> str:
        return f"{self.filename} ({self.size})"


def locate(file: WeightsFile, weights_dir: str | os.PathLike | None) -> Path | None:
    """The file where it should be (`weights_dir`, else the cache), or None."""
    folder = Path(weights_dir).expanduser() if weights_dir is not None else cache_dir()
    path = folder / file.filename
    return path if path.is_file() else None


def find_weights(file: WeightsFile, weights_dir: str | os.PathLike | None = None) -> Path:
    """The weight file: found, or downloaded into the cache; WeightsMissing naming it otherwise."""
    path = locate(file, weights_dir)
    if path is not None:
        return path
    if weights_dir is not None:
        raise missing([file.named], f"{file.filename} is not in {weights_dir}", weights_dir)
    if os.environ.get(OFFLINE_ENV):
        raise missing([file.named], f"{file.filename} is not cached and {OFFLINE_ENV} forbids downloading it")
    try:
        return download(file, cache_dir())
    except (OSError, ValueError) as err:  # any network or disk failure, or a corrupt download
        raise missing([file.named], f"downloading {file.filename} failed ({err})") from err


def download(file: WeightsFile, folder: Path) -> Path:
    """`file` fetched into `folder`, whole or not at all (a temporary file renamed once its MD5 matches)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / file.filename
    digest = hashlib.md5()
    with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{file.filename}.", delete=False) as out:
        try:
            with urllib.request.urlopen(file.url, timeout=60) as response:
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != file.md5:
                raise ValueError(f"its MD5 is {digest.hexdigest()}, not the published {file.md5}")
        except BaseException:
            os.unlink(out.name)
            raise
    shutil.move(out.name, target)
    return target


def missing(filenames: list[str], reason: str, weights_dir: str | os.PathLike | None = None) -> WeightsMissing:
    """One error naming every missing file ("name (size)") and the one folder to copy them to."""
    folder = Path(weights_dir).expanduser() if weights_dir is not None else cache_dir()
    return WeightsMissing(
        f"model weights not available: {reason}",
        f"copy {', '.join(filenames)} into {folder}"
        + ("" if weights_dir is not None else " (with network they download there once), or pass --weights-dir DIR"),
    )


def weights_for(file: WeightsFile, models: str, weights_dir: str | os.PathLike | None, stand_in) -> Path:
    """The file a model kind loads: "openai" the published `file` (find_weights); "random" and
    "tiny-random" the tiny stand-in that `stand_in()` writes, with a warning that it means nothing."""
    if models == "openai":
        return find_weights(file, weights_dir)
    warnings.warn(f"{file.filename}: {models} models use a tiny random stand-in (tests and timing only)", stacklevel=3)
    return stand_in()
