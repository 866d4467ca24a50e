#!/usr/bin/env python3
"""One command to install Sketch Abstraction: the engine in its own virtual environment, and the
Inkscape extension in the user's Inkscape profile.

    python3 install.py                  # engine + extension (the usual)
    python3 install.py --profile DIR    # the extension into another Inkscape profile
    python3 install.py --uninstall      # remove the extension (the engine's venv stays)

Idempotent: running it again updates both. Without Inkscape it installs the engine and the CLI and
says so. Standard library only, so any Python 3.10+ runs it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
EXTENSION_SOURCE = ROOT / "inkscape_ext"
FOLDER_NAME = "sketch-abstraction"
# What the extension imports from the engine's side: the light package (protocol, connection files,
# client, request classes, errors, atomic writes), which needs only the standard library, pyzmq and
# platformdirs.
LIGHT_PACKAGE = "bridge"
VENDORED_PACKAGES = ["platformdirs"]  # pure Python, copied from the engine's venv
MODEL_KINDS = ("openai", "random", "tiny-random")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    venv = Path(args.venv).resolve()
    inkscape = _find_inkscape()
    if args.uninstall:
        return _uninstall(_profile(args.profile, inkscape))
    python = _engine_python(venv)
    if not args.skip_engine:
        _install_engine(venv, args.extras)
    if args.engine_only:
        print(f"Engine installed: {venv / 'bin' / 'sketch-abstraction'}")
        return 0
    profile = _profile(args.profile, inkscape)
    if profile is None:
        print(
            "Inkscape was not found: installed the engine and the command line only "
            f"({python} -m engine, or {venv / 'bin' / 'sketch-abstraction'}). Install Inkscape 1.2+ and run "
            "this again, or pass --profile DIR."
        )
        return 0
    target = _install_extension(profile, python, args.models, args.weights_dir, _inkscape_python(inkscape))
    print(f"Installed the Inkscape extension in {target}")
    print("Restart Inkscape, then: select a photo, Extensions > Sketch Abstraction > Object Sketch...")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", help="Inkscape profile folder (default: Inkscape's own, asked from inkscape)")
    p.add_argument("--venv", default=str(ROOT / ".venv"), help="the engine's virtual environment (default: .venv)")
    p.add_argument("--extras", default="", help="engine extras to install, e.g. mask or test (comma-separated)")
    p.add_argument(
        "--models",
        default="openai",
        choices=MODEL_KINDS,
        help="CLIP weights the engine loads for the extension (default: openai, the real ones; "
        "tiny-random is for tests only)",
    )
    p.add_argument("--weights-dir", help="folder with RN101.pt and ViT-B-32.pt, for machines without internet")
    p.add_argument("--skip-engine", action="store_true", help="do not (re)install the engine, only the extension")
    p.add_argument("--engine-only", action="store_true", help="install the engine and CLI, not the extension")
    p.add_argument("--uninstall", action="store_true", help="remove the extension from the profile")
    return p


# -- the engine ------------------------------------------------------------------------------------


def _engine_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _install_engine(venv: Path, extras: str) -> None:
    python = _engine_python(venv)
    if not python.exists():
        if importlib.util.find_spec("ensurepip") is None:  # Debian and Ubuntu ship venv's pip apart
            sys.exit(
                f"install.py: {sys.executable} cannot create virtual environments (no ensurepip). "
                "On Debian/Ubuntu: sudo apt install python3-venv, then run install.py again."
            )
        print(f"Creating the engine's virtual environment in {venv}")
        _run([sys.executable, "-m", "venv", str(venv)])
        _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--upgrade", "pip"])
    spec = f"{ROOT}[{extras}]" if extras else str(ROOT)
    print(f"Installing the engine into {venv} (torch is large: the first time takes a few minutes)")
    _run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-c",
            str(ROOT / "constraints.txt"),
            "-e",
            spec,
        ]
    )


# -- Inkscape --------------------------------------------------------------------------------------


def _find_inkscape() -> str | None:
    found = shutil.which("inkscape")
    candidates = [found] if found else []
    if sys.platform == "darwin":
        candidates.append("/Applications/Inkscape.app/Contents/MacOS/inkscape")
    elif os.name == "nt":
        for base in (os.environ.get("PROGRAMFILES", r"C:\Program Files"), os.environ.get("PROGRAMFILES(X86)", "")):
            candidates.append(os.path.join(base, "Inkscape", "bin", "inkscape.exe"))
    return next((c for c in candidates if c and os.path.isfile(c)), None)


def _profile(option: str | None, inkscape: str | None) -> Path | None:
    """The profile folder whose extensions/ Inkscape reads."""
    if option:
        return Path(option).expanduser().resolve()
    if os.environ.get("INKSCAPE_PROFILE_DIR"):
        return Path(os.environ["INKSCAPE_PROFILE_DIR"]).resolve()
    if inkscape is None:
        return None
    try:
        out = subprocess.run([inkscape, "--user-data-directory"], capture_output=True, text=True, timeout=60)
        if out.returncode == 0 and out.stdout.strip():
            return Path(out.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired):
        pass
    if sys.platform == "darwin":
        return Path.home() / "Library/Application Support/org.inkscape.Inkscape/config/inkscape"
    if os.name == "nt":
        return Path(os.environ.get("APPDATA", Path.home() / "AppData/Roaming")) / "inkscape"
    return Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "inkscape"


def _inkscape_python(inkscape: str | None) -> str | None:
    """The interpreter Inkscape runs extensions with (python3 on PATH on Linux; bundled elsewhere)."""
    if inkscape and os.name == "nt":
        bundled = Path(inkscape).parent / "python.exe"
        return str(bundled) if bundled.exists() else None
    if inkscape and sys.platform == "darwin":
        bundled = sorted(
            Path(inkscape).resolve().parent.parent.glob("Frameworks/Python.framework/Versions/*/bin/python3")
        )
        return str(bundled[-1]) if bundled else None
    for candidate in ("/usr/bin/python3", shutil.which("python3")):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


def _install_extension(
    profile: Path, engine_python: Path, models: str, weights_dir: str | None, inkscape_python: str | None
) -> Path:
    target = profile / "extensions" / FOLDER_NAME
    staging = target.with_name(f".{FOLDER_NAME}.new")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(EXTENSION_SOURCE, staging, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    vendor = staging / "vendor"
    shutil.copytree(ROOT / LIGHT_PACKAGE, vendor / LIGHT_PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
    site = _site_packages(engine_python)
    for package in VENDORED_PACKAGES:
        shutil.copytree(site / package, vendor / package, ignore=shutil.ignore_patterns("__pycache__"))
    _vendor_pyzmq(vendor, inkscape_python)
    config = {
        "python": str(engine_python),
        "models": models,
        "weights_dir": str(Path(weights_dir).expanduser().resolve()) if weights_dir else None,
    }
    (staging / "engine.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    if models != "openai":
        print(f"note: the extension will use {models} models: sketches are meaningless (tests and timing only)")
    # Swap in whole: Inkscape never sees a half-copied extension.
    if target.exists():
        old = target.with_name(f".{FOLDER_NAME}.old")
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(target)
    return target


def _site_packages(python: Path) -> Path:
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip())


def _vendor_pyzmq(vendor: Path, inkscape_python: str | None) -> None:
    """pyzmq has compiled parts, so it must match Inkscape's Python: use the one it already has, or
    install a matching wheel with that Python's pip."""
    if inkscape_python is None:
        print(
            "warning: Inkscape's Python was not found; if the extension says 'No module named zmq', "
            "install pyzmq for it (Debian/Ubuntu: apt install python3-zmq)"
        )
        return
    if subprocess.run([inkscape_python, "-c", "import zmq"], capture_output=True).returncode == 0:
        print(f"Inkscape's Python ({inkscape_python}) already has pyzmq")
        return
    print(f"Installing pyzmq for Inkscape's Python ({inkscape_python})")
    done = subprocess.run(
        [inkscape_python, "-m", "pip", "install", "--quiet", "--target", str(vendor), "--only-binary=:all:", "pyzmq"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        print(
            "warning: could not install pyzmq for Inkscape's Python; install it yourself "
            "(Debian/Ubuntu: sudo apt install python3-zmq), then run install.py again"
        )


def _uninstall(profile: Path | None) -> int:
    if profile is None:
        print("Inkscape was not found and no --profile given: nothing to uninstall")
        return 0
    target = profile / "extensions" / FOLDER_NAME
    if target.exists():
        shutil.rmtree(target)
        print(f"Removed {target}")
    else:
        print(f"Nothing installed in {target}")
    print("The engine's virtual environment stays; delete the .venv folder to remove it too.")
    return 0


def _run(command: list[str]) -> None:
    if subprocess.run(command).returncode != 0:
        sys.exit(f"install.py: failed: {' '.join(command)}")


if __name__ == "__main__":
    sys.exit(main())
