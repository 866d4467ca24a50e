"""Shared fixtures: never touch the network, one tiny random CLIP runtime, prepared targets; the
harness's fixtures (tests/harness) registered for every module."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from engine.clip.models import OFFLINE_ENV
from tests.harness.paths import ANIMAL, VASE

# The shared fixtures of tests/harness (the session's engine, the installed extension) for every module.
pytest_plugins = ["tests.harness.engine", "tests.harness.inkscape"]

DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No test may try to download weights."""
    monkeypatch.setenv(OFFLINE_ENV, "1")


@pytest.fixture
def isolated_home(tmp_path, monkeypatch):
    """HOME and XDG_CACHE_HOME in empty temp folders, so a real ~/.cache/clip is never used."""
    home, cache = tmp_path / "home", tmp_path / "xdg-cache"
    home.mkdir()
    cache.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return home


@pytest.fixture(scope="session", params=DEVICES)
def device(request) -> str:
    """Each device this machine has: a test that takes it runs on the CPU, and again on CUDA where
    there is a GPU, so the GPU path is tested by the same assertions."""
    return request.param


@pytest.fixture(scope="session")
def runtime(device):
    """A runtime with tiny random CLIP models on `device`, loaded once per device for the session."""
    from engine.clip.models import RN101, VIT_B32
    from engine.runtime import Runtime

    rt = Runtime.create(device, "tiny-random")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "tiny-random weights, sketches will be meaningless"
        rt.clip(RN101)
        rt.clip(VIT_B32)
    return rt


def _target(path: Path):
    from engine.io.image import load_image
    from engine.preprocess import prepare_target

    target, _ = prepare_target(load_image(path), None)
    return target


@pytest.fixture(scope="session")
def animal_target():
    """(1, 3, 224, 224) in [0, 1]: the animal photo on the canvas."""
    return _target(ANIMAL)


@pytest.fixture(scope="session")
def vase_target():
    return _target(VASE)
