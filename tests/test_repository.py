"""The repository stands on its own: its tests and scripts read nothing outside it."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from tests.data import draw
from tests.harness.paths import DATA, ROOT

# Folders and files whose code runs on a user's clone: the product, its tests, scripts and benchmarks.
CHECKED = [
    "engine",
    "bridge",
    "inkscape_ext",
    "tests",
    "scripts",
    "benchmarks",
    ".ci",
    ".github",
    "installer",
    "install.py",
]
SUFFIXES = {".py", ".sh", ".inx", ".toml", ".cfg", ".yaml", ".yml", ""}
# Absolute paths the code may name: the system's own (interpreters, /proc, /run/user, Inkscape's install
# folders) and one that exists nowhere on purpose (tests of a missing file).
SYSTEM_ROOTS = {"usr", "proc", "dev", "sys", "tmp", "etc", "bin", "run", "Applications", "Library", "nonexistent"}
SYSTEM_ROOTS |= {"org"}  # D-Bus object paths (/org/a11y/bus: the menu test reads Inkscape's window over it)
ABSOLUTE = re.compile(r"""["'](/[A-Za-z0-9_.-]+)(?:/[^"'\s]*)?["']""")
UPWARD = re.compile(r"""\.\./+shared|parents\[[2-9]\]|(?:\.parent){3,}""")


def _code_files():
    for name in CHECKED:
        path = ROOT / name
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for file in files:
            if "__pycache__" not in file.parts and file.suffix in SUFFIXES:
                yield file


def test_no_code_names_a_path_outside_the_repository():
    offending = []
    for file in _code_files():
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # a binary file (an image) names no path
        for number, line in enumerate(text.splitlines(), 1):
            roots = [m.group(1)[1:] for m in ABSOLUTE.finditer(line)]
            if any(root not in SYSTEM_ROOTS for root in roots) or UPWARD.search(line):
                offending.append(f"{file.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offending, "paths outside the repository (a user's clone has none of them):\n" + "\n".join(offending)


def test_the_check_catches_what_it_is_for():
    """The patterns above really match the paths that broke the suite on other machines."""
    # Spelled apart, so that neither the check above nor a grep for such paths flags this file.
    work, home, shared, parents = "/" + "work", "/" + "home", "sha" + "red", "parents" + "[2]"
    for line in [
        f'IMAGES = Path("{work}/{shared}/images")',
        f'x = "{home}/me/photo.png"',
        f'p = ROOT / "../{shared}/x"',
        f"here = Path(__file__).{parents}",
    ]:
        roots = [m.group(1)[1:] for m in ABSOLUTE.finditer(line)]
        assert any(root not in SYSTEM_ROOTS for root in roots) or UPWARD.search(line), line
    assert not UPWARD.search("ROOT = Path(__file__).resolve().parents[1]")


@pytest.mark.parametrize("name", sorted(draw.images()))
def test_the_test_images_are_what_draw_py_draws(name):
    committed = Image.open(DATA / name)
    drawn = draw.images()[name]
    assert (committed.mode, committed.size) == (drawn.mode, drawn.size)
    np.testing.assert_array_equal(np.asarray(committed), np.asarray(drawn))


def test_the_licence_travels_with_the_installed_extension(tmp_path):
    """MIT asks that its notice go with every copy: the installed extension carries the project's
    LICENSE and third-party notice, and each vendored package its own licence file."""
    import subprocess
    import sys

    profile = tmp_path / "profile"
    command = [sys.executable, str(ROOT / "install.py"), "--skip-engine", "--profile", str(profile)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    ext = profile / "extensions" / "sketch-abstraction"
    assert (ext / "LICENSE").read_text() == (ROOT / "LICENSE").read_text()
    notices = (ext / "THIRD_PARTY_NOTICES.md").read_text()
    assert "ballerina" in notices and "platformdirs" in notices and "pyzmq" in notices
    assert "MIT License" in (ext / "vendor" / "platformdirs" / "LICENSE").read_text()
