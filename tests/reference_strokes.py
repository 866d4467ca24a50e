"""Every number of small CLIPasso and CLIPascene runs with the tiny random models on the CPU, kept in
tests/data/reference_strokes.json, so that a change meant to leave the optimisation alone (a refactor)
is checked to give the same strokes, losses and picks (tests/test_clipasso.py, tests/test_clipascene.py).

A change that means to alter the numbers regenerates the file, and says so in its commit:
    .venv/bin/python -m tests.reference_strokes
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

from bridge.params import ClipassoParams, SceneParams

REFERENCE = Path(__file__).parent / "data" / "reference_strokes.json"

CLIPASSO = ClipassoParams(strokes=(6, 3), seeds=(0, 1000), iterations=12, eval_every=4, min_delta=0.0)
SCENE = SceneParams(
    layers=(2, 11),
    levels=2,
    strokes=8,
    seeds=(0, 1000),
    iterations=3,
    hidden=32,
    fidelity_eval_every=2,
    fidelity_eval_from=1,
    simplicity_eval_every=2,
    simplicity_eval_from=1,
)
BANKS = (4, 0)  # an augmentation bank, and augmentations drawn fresh every step (the official way)


def clipasso_numbers(runtime, target) -> dict[str, list]:
    """{name: flat values} of `optimise` with CLIPASSO, with and without a bank."""
    from engine.methods.clipasso import optimise

    out: dict[str, list] = {}
    for bank in BANKS:
        run = optimise(runtime, target, dataclasses.replace(CLIPASSO, aug_bank=bank))
        out[f"bank {bank} iterations"] = [run.iterations]
        for level in run.levels:
            key = f"bank {bank} level {level.strokes}"
            out[f"{key} points"] = level.points.flatten().tolist()
            out[f"{key} importance"] = level.importance.flatten().tolist()
            out[f"{key} picks"] = [level.eval_loss, level.seed, level.best_iteration, *level.seed_losses]
    return out


def scene_numbers(runtime, object_target, background_target) -> dict[str, list]:
    """{name: flat values} of `optimise_scene` with SCENE for an object and a background, with and without a bank."""
    from engine.methods.clipascene import BACKGROUND, OBJECT, SceneTarget, optimise_scene

    out: dict[str, list] = {}
    parts = [SceneTarget(OBJECT, object_target), SceneTarget(BACKGROUND, background_target)]
    for bank in BANKS:
        run = optimise_scene(runtime, parts, dataclasses.replace(SCENE, aug_bank=bank))
        out[f"bank {bank} iterations"] = [run.iterations]
        for column in run.columns:
            for cell in column.cells:
                key = f"bank {bank} {column.part} layer {column.layer} row {cell.row}"
                out[f"{key} points"] = cell.points.flatten().tolist()
                out[f"{key} keep"] = cell.keep.int().tolist()
                out[f"{key} importance"] = cell.importance.tolist()
                out[f"{key} presence"] = [] if cell.presence is None else cell.presence.tolist()
                losses = [cell.losses[name] for name in sorted(cell.losses)]
                out[f"{key} picks"] = [cell.seed, cell.best_iteration, cell.ratio or 0.0, *losses]
    return out


def reference() -> dict[str, dict[str, list]]:
    return json.loads(REFERENCE.read_text())


def _as_json(numbers: dict[str, dict[str, list]]) -> str:
    """One line per named series, so that a diff of the file shows which numbers changed."""
    methods = []
    for method, series in numbers.items():
        lines = ",\n".join(f"  {json.dumps(name)}: {json.dumps(values)}" for name, values in series.items())
        methods.append(f" {json.dumps(method)}: {{\n{lines}\n }}")
    return "{\n" + ",\n".join(methods) + "\n}\n"


def _regenerate() -> None:
    from engine.io.image import load_image
    from engine.preprocess import prepare_target
    from engine.runtime import Runtime
    from tests.harness.paths import ANIMAL, FIELD

    runtime = Runtime.create("cpu", "tiny-random")
    animal = prepare_target(load_image(ANIMAL), None)[0]
    field = prepare_target(load_image(FIELD), None)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # tiny-random weights
        numbers = {
            "clipasso": clipasso_numbers(runtime, animal),
            "clipascene": scene_numbers(runtime, field, 1 - field),
        }
    REFERENCE.write_text(_as_json(numbers))
    print(f"wrote {REFERENCE}")


if __name__ == "__main__":
    _regenerate()
