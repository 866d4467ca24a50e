"""CI on Windows: install the extension as a user would and run one effect inside the real Inkscape.

    python .github/inkscape_windows_effect.py EXTENSION_PYTHON

EXTENSION_PYTHON is the python.org Python that Inkscape is told to run extensions with (its own,
an MSYS2 build, cannot load pyzmq from PyPI). Every folder has a space and non-ASCII letters, the
engine starts from the extension (detached, no console), with the tiny random test models.
Exits non-zero, saying why, if any step fails.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from installer import locate  # noqa: E402 (the repository's root, added above)

OBJECT = "org.sketch-abstraction.object-sketch"
SETTINGS = {"levels": "6,3", "quality": "custom", "seeds": "1", "iterations": "10"}


def main() -> int:
    extension_python = sys.argv[1]
    base = Path(tempfile.mkdtemp(prefix="sketch ")) / "Zoë Müller"
    profile, work = base / "Inkscape profil", base / "Zeichnungen"
    profile.mkdir(parents=True)
    work.mkdir()
    env = {
        **os.environ,
        "INKSCAPE_PROFILE_DIR": str(profile),
        "SKETCH_ABSTRACTION_RUNTIME_DIR": str(base / "run"),
        "SKETCH_ABSTRACTION_DATA_DIR": str(base / "data"),
        "SKETCH_ABSTRACTION_OFFLINE": "1",
    }
    inkscape = next(
        (c for c in locate.inkscape_candidates("win32", os.environ, str(Path.home()), None, []) if os.path.isfile(c)),
        None,
    )
    if inkscape is None:
        return fail("Inkscape is not installed in Program Files")
    bundled = locate.python_candidates("win32", inkscape, None, None)[0]
    said = install(profile, env, "--inkscape-python", bundled)
    print(f"install.py with Inkscape's own Python ({bundled}):\n{said}")

    preferences = " ".join(f'{OBJECT}.{k}="{v}"' for k, v in SETTINGS.items())
    (profile / "preferences.xml").write_text(
        '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n<inkscape version="1">'
        f'<group id="extensions" python-interpreter="{extension_python}" {preferences} /></inkscape>',
        encoding="utf-8",
    )
    said = install(profile, env)
    print(f"install.py with the preference set:\n{said}")
    if "Installed pyzmq" not in said and "already has pyzmq" not in said:
        return fail("install.py did not provide pyzmq for the extension's Python")

    photo = base64.b64encode((ROOT / "tests" / "data" / "bird.png").read_bytes()).decode()
    document, result = work / "Vogel Zoë.svg", work / "Ergebnis.svg"
    document.write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        'width="300" height="300" viewBox="0 0 300 300">'
        f'<image id="img1" x="0" y="0" width="300" height="300" xlink:href="data:image/png;base64,{photo}"/></svg>',
        encoding="utf-8",
    )
    actions = f"select-by-id:img1;{OBJECT}.noprefs;export-filename:{result};export-do"
    console = locate.console_inkscape(inkscape, "win32")
    ran = subprocess.run(
        [console, "--batch-process", f"--actions={actions}", str(document)],
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=900,
    )
    print(f"inkscape exited {ran.returncode}\n{ran.stdout}\n{ran.stderr}")
    stop = [str(ROOT / ".venv" / "Scripts" / "python.exe"), "-m", "engine", "stop"]
    subprocess.run(stop, env=env, timeout=120)
    svg = result.read_text(encoding="utf-8") if result.exists() else ""
    paths = len(re.findall(r"<path\b", svg))
    if ran.returncode != 0 or "Sketch of" not in svg or paths < 9:
        log = base / "run" / "engine.log"
        print(log.read_text(encoding="utf-8", errors="replace") if log.exists() else "(no engine log)")
        return fail(f"the effect did not insert the sketch ({paths} paths in {result})")
    print(f"the effect inserted the sketch: {paths} paths")
    return 0


def install(profile: Path, env: dict[str, str], *extra: str) -> str:
    command = [sys.executable, str(ROOT / "install.py"), "--skip-engine", "--models", "tiny-random"]
    done = subprocess.run(
        [*command, "--profile", str(profile), *extra],
        env={**env, "PYTHONIOENCODING": "utf-8"},  # its output names non-ASCII folders
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
    )
    if done.returncode != 0:
        raise SystemExit(f"install.py failed: {done.stdout}\n{done.stderr}")
    return done.stdout


def fail(why: str) -> int:
    print(f"error: {why}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
