"""The light package (bridge/) is what the Inkscape extension vendors: it must work where only the
standard library, pyzmq and platformdirs exist, and never pull in the engine's numeric stack."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import bridge
from tests.harness.paths import ANIMAL, ROOT

# A Python where the engine's dependencies do not exist: importing any of them fails as it would there.
BLOCK = """
import importlib.abc, sys
BLOCKED = {"torch", "numpy", "engine", "PIL", "lxml", "cv2", "open_clip", "torchvision", "kornia", "scipy"}
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not installed here")
sys.meta_path.insert(0, Absent())
"""

USE = """
import importlib, json
for name in MODULES:
    importlib.import_module(name)
from bridge.params import ClipassoParams, SketchRequest, request_from_json, request_to_json
job, buffers = request_to_json(SketchRequest(IMAGE, ClipassoParams(strokes=(8, 4))).validate())
assert request_from_json(json.loads(json.dumps(job)), buffers).params.strokes == (8, 4)
print("ok")
"""


def _modules() -> list[str]:
    return sorted(f"bridge.{m.name}" for m in pkgutil.iter_modules(bridge.__path__))


def test_every_module_of_the_light_package_works_without_torch_numpy_or_the_engine():
    modules = _modules()
    assert {"bridge.protocol", "bridge.connection", "bridge.client", "bridge.params", "bridge.errors"} <= set(modules)
    code = f"{BLOCK}\nMODULES = {modules!r}\nIMAGE = {str(ANIMAL)!r}\n{USE}"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_the_blocker_really_blocks():
    """The check above means something only if the blocked imports do fail."""
    code = f"{BLOCK}\nimport torch"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "torch is not installed here" in out.stderr
