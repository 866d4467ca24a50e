"""The lowest versions pyproject.toml allows are versions the code works with.

Where that is cheap to check, the floor version is installed from the package registry into a
temporary folder and the code that depends on it runs against it, in a fresh process. Floors that
would mean downloading gigabytes (torch) are not checked here. Without a reachable registry these
tests skip, saying so.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from tests.harness.paths import ROOT

pytestmark = pytest.mark.slow


def floors() -> dict[str, str]:
    """{distribution name: lowest allowed version} of the installed package's dependencies (pyproject's)."""
    out = {}
    for requirement in metadata.requires("sketch-abstraction") or []:
        if "extra ==" in requirement:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9.]*)", requirement.split(";")[0].strip())
        assert match, f"{requirement!r}: every dependency has a plain >= floor"
        out[match.group(1).lower().replace("_", "-")] = match.group(2)
    return out


def _version(text: str) -> tuple[int, ...]:
    """ "3" -> (3,), "3.0.0" -> (3,): versions compared as numbers, trailing zeros dropped."""
    parts = [int(part) for part in text.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def install_floor(name: str, folder: Path) -> str:
    """pip-installs `name`'s floor version (alone, no dependencies) into `folder`; returns the version."""
    version = floors()[name]
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--only-binary=:all:", "--target",
         str(folder), f"{name}=={version}"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"could not install {name}=={version} from the package registry: {done.stderr.strip()[-300:]}")
    return version


def run_with(folder: Path, code: str) -> str:
    """Runs `code` in a fresh Python that finds `folder`'s packages before the installed ones."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), str(ROOT)])}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_every_dependency_has_a_floor():
    assert {"torch", "open-clip-torch", "platformdirs", "pyzmq"} <= set(floors())


@pytest.mark.network  # installs the floor version from PyPI
def test_the_clip_features_work_with_the_lowest_open_clip(tmp_path):
    version = install_floor("open-clip-torch", tmp_path)
    code = (
        f"FOLDER = {str(tmp_path)!r}\n"
        + """
import importlib.metadata, warnings, torch, open_clip
warnings.simplefilter("ignore")
from engine.clip.models import load_clip
from engine.clip.features import attention_saliency, normalize, resnet_features, vit_block_outputs
x = normalize(torch.rand(2, 3, 224, 224))
vit = load_clip("ViT-B-32", "tiny-random").visual
blocks = vit_block_outputs(vit, x, list(range(len(vit.transformer.resblocks))))  # layers count from 0
# The last block's class token, through the model's own head, is the model's own embedding.
head = vit.ln_post(blocks[max(blocks)][:, 0]) @ vit.proj
assert torch.allclose(head, vit(x), atol=1e-5), (head - vit(x)).abs().max()
assert attention_saliency(vit, x).shape == (2, 224, 224)
features = resnet_features(load_clip("RN101", "tiny-random").visual, x)
assert features.layer2.shape[-1] == 28 and features.layer3.shape[-1] == 14 and features.embedding.shape[0] == 2
assert open_clip.__file__.startswith(FOLDER), open_clip.__file__
print(importlib.metadata.version("open_clip_torch"))
"""
    )
    assert _version(run_with(tmp_path, code)) == _version(version)


@pytest.mark.network  # installs the floor version from PyPI
def test_the_connection_folders_work_with_the_lowest_platformdirs(tmp_path):
    version = install_floor("platformdirs", tmp_path / "site")
    code = f"""
import os, platformdirs
os.environ["HOME"] = {str(tmp_path / "home")!r}
for name in ("XDG_RUNTIME_DIR", "XDG_DATA_HOME", "XDG_CACHE_HOME", "SKETCH_ABSTRACTION_RUNTIME_DIR",
             "SKETCH_ABSTRACTION_DATA_DIR"):
    os.environ.pop(name, None)
from bridge import connection
assert connection.runtime_dir().is_dir() and connection.data_dir().is_dir()
print(platformdirs.__version__)
"""
    assert _version(run_with(tmp_path / "site", code)) == _version(version)
