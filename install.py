#!/usr/bin/env python3
"""One command to install Sketch Abstraction: the engine in its own virtual environment, and the
Inkscape extension in the user's Inkscape profile.

    python3 install.py                  # engine + extension (the usual)
    python3 install.py --profile DIR    # the extension into another Inkscape profile
    python3 install.py --uninstall      # remove the extension (the engine's venv stays)
    py install.py --torch-index https://download.pytorch.org/whl/cu126   # Windows + NVIDIA GPU

Idempotent: running it again updates both. Without Inkscape it installs the engine and the CLI and
says so. Standard library only, so any Python 3.10+ runs it; the platform decisions (Linux, macOS,
Windows) are functions in installer/.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from installer import engine, gtk, locate
from installer.pyzmq import Unsupported, vendor_pyzmq

ROOT = Path(__file__).resolve().parent
EXTENSION_SOURCE = ROOT / "inkscape_ext"
FOLDER_NAME = "sketch-abstraction"
# What the extension imports from the engine's side: the light package (protocol, connection files,
# client, request classes, errors, atomic writes), which needs only the standard library, pyzmq and
# platformdirs.
LIGHT_PACKAGE = "bridge"
VENDORED_PACKAGES = ["platformdirs"]  # pure Python, copied from the engine's venv
LICENCE_FILES = ("LICENSE", "THIRD_PARTY_NOTICES.md")  # copied into the installed extension
MODEL_KINDS = ("openai", "random", "tiny-random")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    venv = Path(args.venv).resolve()
    inkscape = _find_inkscape()
    if args.uninstall:
        return _uninstall(_profile(args.profile, inkscape))
    python = Path(engine.venv_python(str(venv), sys.platform))
    command_line = engine.venv_program(str(venv), "sketch-abstraction", sys.platform)
    if not args.skip_engine:
        _install_engine(venv, args.extras, args.torch_index)
    if args.engine_only:
        print(f"Engine installed: {command_line}")
        return 0
    profile = _profile(args.profile, inkscape)
    if profile is None:
        print(
            "Inkscape was not found: installed the engine and the command line only "
            f"({python} -m engine, or {command_line}). Install Inkscape 1.2+ and run "
            "this again, or pass --profile DIR."
        )
        return 0
    inkscape_python = args.inkscape_python or _inkscape_python(inkscape, profile)
    target = _install_extension(profile, python, args.models, args.weights_dir, inkscape_python)
    print(f"Installed the Inkscape extension in {target}")
    if inkscape_python:
        _say_gtk(inkscape_python)
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
    p.add_argument(
        "--weights-dir",
        help="folder with RN101.pt and ViT-B-32.pt, for machines without internet: they are linked (or "
        "copied) into the folder where the engine looks for them",
    )
    p.add_argument(
        "--inkscape-python",
        help="the Python Inkscape runs extensions with (default: its python-interpreter preference, else the "
        "one it ships, else /usr/bin/python3); pyzmq is made importable for it",
    )
    p.add_argument(
        "--torch-index",
        help="a pip index to take torch and torchvision from, e.g. a CUDA build on Windows: "
        f"{engine.CUDA_INDEX_EXAMPLE}",
    )
    p.add_argument("--skip-engine", action="store_true", help="do not (re)install the engine, only the extension")
    p.add_argument("--engine-only", action="store_true", help="install the engine and CLI, not the extension")
    p.add_argument("--uninstall", action="store_true", help="remove the extension from the profile")
    return p


# -- the engine ------------------------------------------------------------------------------------


def _install_engine(venv: Path, extras: str, torch_index: str | None) -> None:
    python = Path(engine.venv_python(str(venv), sys.platform))
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
    for command in engine.torch_commands(str(python), str(ROOT / "constraints.txt"), torch_index):
        _run(command)
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
    advice = engine.torch_advice(sys.platform, platform.machine(), shutil.which("nvidia-smi") is not None, torch_index)
    if advice:
        print(advice)


# -- Inkscape --------------------------------------------------------------------------------------


def _find_inkscape() -> str | None:
    registry = _registry_app_paths() if sys.platform == "win32" else []
    candidates = locate.inkscape_candidates(
        sys.platform, os.environ, str(Path.home()), shutil.which("inkscape"), registry
    )
    return next((c for c in candidates if os.path.isfile(c)), None)


def _registry_app_paths() -> list[str]:
    """Where Inkscape's Windows installer says inkscape.exe is (per user, then machine-wide)."""
    import winreg

    found = []
    for hive in (winreg.HKEY_CURRENT_USER, winreg.HKEY_LOCAL_MACHINE):
        try:
            with winreg.OpenKey(hive, locate.WINDOWS_APP_PATHS_KEY) as key:
                found.append(str(winreg.QueryValue(key, None)).strip('"'))
        except OSError:
            continue
    return found


def _profile(option: str | None, inkscape: str | None) -> Path | None:
    """The profile folder whose extensions/ Inkscape reads."""
    says = None
    if not option and not os.environ.get("INKSCAPE_PROFILE_DIR") and inkscape is not None:
        try:
            command = [locate.console_inkscape(inkscape, sys.platform), "--user-data-directory"]
            out = subprocess.run(command, capture_output=True, text=True, timeout=60)
            says = out.stdout if out.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired):
            pass
    folder = locate.profile_dir(option, sys.platform, os.environ, str(Path.home()), inkscape is not None, says)
    return Path(folder).expanduser().resolve() if folder else None


def _inkscape_python(inkscape: str | None, profile: Path) -> str | None:
    """The interpreter Inkscape runs extensions with: its preference, or the one it ships, or python3."""
    try:
        preference = locate.interpreter_preference((profile / "preferences.xml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        preference = None
    if preference and not os.path.isabs(preference):
        preference = shutil.which(preference) or preference
    real = os.path.realpath(inkscape) if inkscape else None  # a link on PATH into Inkscape.app
    candidates = locate.python_candidates(sys.platform, real, preference, shutil.which("python3"))
    return next((c for c in candidates if os.path.isfile(c)), None)


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
        _copy_licences(site, package, vendor / package)
    for notice in LICENCE_FILES:  # the licence travels with the code it covers
        shutil.copy2(ROOT / notice, staging / notice)
    _vendor_pyzmq(vendor, inkscape_python, engine_python)
    weights_folder = _weights_folder(engine_python)
    if weights_dir and weights_folder:
        _place_weights(Path(weights_dir).expanduser(), Path(weights_folder))
    config = {
        "python": str(engine_python),
        "models": models,
        # Only where the engine's own folder is unknown is the folder handed to the engine instead.
        "weights_dir": str(Path(weights_dir).expanduser().resolve()) if weights_dir and not weights_folder else None,
        # For the extension's messages: the exact commands that repair this installation.
        "install_py": str(ROOT / "install.py"),
        "installer_python": sys.executable,
        "weights_folder": weights_folder,
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


WEIGHT_FILES = ("RN101.pt", "ViT-B-32.pt")
SCENE_WEIGHT_FILES = ("u2net.onnx", "big-lama.pt")  # scenes' U2-Net and LaMa: placed too when DIR has them


def _weights_folder(engine_python: Path) -> str | None:
    """Where the engine looks for CLIP weights (bridge.connection.weights_dir), as its Python says."""
    out = subprocess.run(
        [str(engine_python), "-c", "from bridge.connection import weights_dir; print(weights_dir())"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() or None if out.returncode == 0 else None


def _place_weights(source: Path, folder: Path) -> None:
    """Link (or, across file systems, copy) the CLIP weight files, and the scene models' when there,
    from `source` into `folder`."""
    missing = [name for name in WEIGHT_FILES if not (source / name).is_file()]
    if missing:
        sys.exit(f"install.py: {source} does not hold {' and '.join(missing)}; pass the folder that holds both")
    folder.mkdir(parents=True, exist_ok=True)
    scene = [name for name in SCENE_WEIGHT_FILES if (source / name).is_file()]
    for name in (*WEIGHT_FILES, *scene):
        target = folder / name
        if target.exists() and target.samefile(source / name):
            continue
        target.unlink(missing_ok=True)
        try:
            os.link(source / name, target)
        except OSError:
            shutil.copy2(source / name, target)
    print(f"CLIP weights{' and ' + ', '.join(scene) if scene else ''} placed in {folder}")
    absent = [name for name in SCENE_WEIGHT_FILES if name not in scene]
    if absent:
        print(f"Scenes also need {' and '.join(absent)}: they download on first use, or copy them into {folder}")


def _site_packages(python: Path) -> Path:
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip())


def _copy_licences(site: Path, package: str, dest: Path) -> None:
    """A vendored package's licence files (from its *.dist-info) beside its code, as its licence asks."""
    for info in site.glob(f"{package}-*.dist-info"):
        for licence in [*info.glob("LICEN[CS]E*"), *info.glob("licenses/*")]:
            if licence.is_file():
                shutil.copy2(licence, dest / licence.name)


def _vendor_pyzmq(vendor: Path, inkscape_python: str | None, engine_python: Path) -> None:
    """pyzmq has compiled parts, so it must match Inkscape's Python: use the one it has, or put the
    wheel built for it (fetched with the engine's pip) in vendor/."""
    if inkscape_python is None:
        print(
            "warning: Inkscape's Python was not found; pass it with --inkscape-python PATH, or, if the "
            "extension says 'No module named zmq', install pyzmq for it (Debian/Ubuntu: apt install python3-zmq)"
        )
        return
    try:
        print(vendor_pyzmq(vendor, inkscape_python, str(engine_python)))
    except Unsupported as err:
        print(f"warning: no pyzmq for Inkscape's Python ({inkscape_python}): {err.message}.\n  fix: {err.hint}")


def _say_gtk(inkscape_python: str) -> None:
    """Say, with the one command that fixes it, when Inkscape's Python cannot show the extension's windows."""
    try:
        os_release = Path("/etc/os-release").read_text(encoding="utf-8")
    except OSError:
        os_release = ""
    note = gtk.advice(inkscape_python, sys.platform, os_release)
    if note:
        print(note)


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
