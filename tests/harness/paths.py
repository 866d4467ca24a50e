"""The repository and the pictures the tests use (tests/data is drawn by tests/data/draw.py; see
tests/data/SOURCE.md)."""

from __future__ import annotations

from pathlib import Path

import tests

ROOT = Path(tests.__file__).resolve().parents[1]  # the folder that holds the tests package
DATA = ROOT / "tests" / "data"
ANIMAL = DATA / "animal.png"  # 248 x 248 RGB object photo
VASE = DATA / "vase.png"  # 240 x 240 RGB, a second object photo
BIRD = DATA / "bird.png"  # 300 x 300 RGBA object on transparency
FIELD, FIELD_MASK = DATA / "field.png", DATA / "field_mask.png"  # 320 x 240 scene and its object mask
BALLERINA = ROOT / "examples" / "ballerina.png"  # 500 x 500 scene (MIT, examples/SOURCE.md)
BALLERINA_MASK = ROOT / "examples" / "ballerina_mask.png"
