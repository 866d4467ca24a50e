"""The engine's imports run one way (issue 24): the computing side (the service, the methods, the
scene, the renderer, CLIP and engine/jobs.py) never imports the command line, and no engine
modules import each other in a circle. Every import counts, also one inside a function (a lazy
import is still a dependency). In the command line, a command's module imports the shared helpers,
never another command; and loading them pulls in no torch (`status` starts in a blink)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parents[1] / "engine"
COMPUTING = ("engine.service", "engine.methods", "engine.scene", "engine.render", "engine.clip", "engine.jobs")


def _modules() -> dict[str, Path]:
    modules = {}
    for path in ENGINE.rglob("*.py"):
        parts = path.relative_to(ENGINE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The engine modules `name` imports (a package's module when an import names something in it)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _inside(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_the_computing_side_never_imports_the_command_line():
    offenders = {
        name: sorted(d for d in deps if _inside(d, ("engine.cli",)))
        for name, deps in _graph().items()
        if _inside(name, COMPUTING)
    }
    assert {name: deps for name, deps in offenders.items() if deps} == {}


def test_no_engine_modules_import_each_other_in_a_circle():
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    assert circles == []


def _commands() -> set[str]:
    """The command line's command modules: those that register a command (`register(commands)`)."""
    modules = _modules()
    return {
        name
        for name, path in modules.items()
        if name.startswith("engine.cli.")
        and any(
            isinstance(node, ast.FunctionDef) and node.name == "register"
            for node in ast.parse(path.read_text(encoding="utf-8")).body
        )
    }


def test_a_command_imports_the_shared_helpers_never_another_command():
    commands = _commands()
    assert {"engine.cli.sketch", "engine.cli.submit", "engine.cli.serve", "engine.cli.batch"} <= commands
    graph = _graph()
    assert {name: sorted(graph[name] & commands) for name in commands if graph[name] & commands} == {}


def test_loading_the_command_line_loads_no_torch():
    """Every command's module is imported to build the parser; the ones that compute import torch
    (seconds to load) when they run, so that `status`, `submit` or `stop` answer at once. (numpy and
    lxml do load: `animate` takes its choices from engine.motion.plan.)"""
    code = (
        "import sys\nfrom engine.cli import build_parser\nbuild_parser()\n"
        "print(sorted(m for m in ('torch', 'torchvision', 'open_clip', 'PIL', 'cv2') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ENGINE.parent, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_contract_check_sees_a_lazy_import(tmp_path):
    """The checker itself: an import inside a function is found (else it could pass by missing it)."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from engine.cli.client import client_errors\n")
    assert _imports("engine.probe", probe, _modules()) == {"engine.cli.client"}


_SPIN_AT_TORCH_LOAD = """
import os, sys
class Spy:
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            print(os.environ.get("GOMP_SPINCOUNT"))
            sys.meta_path.remove(self)
sys.meta_path.insert(0, Spy())
import engine.render.raster
"""


@pytest.mark.parametrize(("user_value", "at_torch_load"), [(None, "10000"), ("300000", "300000")])
def test_torch_loads_with_the_engine_s_openmp_spin_count_unless_the_user_set_one(user_value, at_torch_load):
    """libgomp reads GOMP_SPINCOUNT once, when torch loads: the engine's value (busy cores are not
    taken by spinning workers, benchmarks/README.md) must be in the environment by then, and a
    user's own value must be left alone."""
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    if user_value is not None:
        env["GOMP_SPINCOUNT"] = user_value
    out = subprocess.run(
        [sys.executable, "-c", _SPIN_AT_TORCH_LOAD],
        cwd=ENGINE.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == at_torch_load
