"""A pyzmq that Inkscape's Python can import, put in the extension's vendor/ folder.

pyzmq is compiled, so the wheel must match Inkscape's interpreter, not the one running install.py:
the interpreter is asked for its version, ABI and platform (PROBE), the matching binary wheel is
fetched with the engine's pip (`pip download --only-binary=:all: --platform ... --python-version ...
--implementation cp --abi ...`), unpacked, and imported by that interpreter before it is kept.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

REQUIREMENT = "pyzmq>=25"  # the engine's lower bound (pyproject.toml)

# Run by the target interpreter (any Python 3.6+): what picks its wheels, and whether it has zmq.
PROBE = """
import importlib.machinery, json, platform, sys, sysconfig
try:
    import zmq
    has_zmq = True
except Exception:
    has_zmq = False
print(json.dumps({
    "version": list(sys.version_info[:2]),
    "implementation": sys.implementation.name,
    "platform": sysconfig.get_platform(),
    "machine": platform.machine(),
    "mac_ver": platform.mac_ver()[0],
    "libc": list(platform.libc_ver()),
    "abiflags": getattr(sys, "abiflags", ""),
    "gil_disabled": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
    "extension_suffixes": importlib.machinery.EXTENSION_SUFFIXES,
    "has_zmq": has_zmq,
}))
"""

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


class Unsupported(Exception):
    """No pyzmq wheel can serve this interpreter; `hint` says what the user can do."""

    def __init__(self, message: str, hint: str):
        super().__init__(message)
        self.message, self.hint = message, hint


@dataclass(frozen=True)
class Interpreter:
    """What an interpreter said about itself (PROBE's answer)."""

    version: tuple[int, int]
    implementation: str  # "cpython"
    platform: str  # sysconfig.get_platform(): "win-amd64", "macosx-11.0-arm64", "linux-x86_64", "mingw_x86_64_ucrt"
    machine: str  # platform.machine(): the CPU it runs as ("arm64", "x86_64", "AMD64")
    mac_ver: str = ""  # "14.5" on macOS
    libc: tuple[str, str] = ("", "")  # ("glibc", "2.36") on most Linux
    abiflags: str = ""
    gil_disabled: bool = False
    extension_suffixes: tuple[str, ...] = ()
    has_zmq: bool = False

    @classmethod
    def from_probe(cls, answer: str) -> Interpreter:
        data = json.loads(answer)
        return cls(
            version=(int(data["version"][0]), int(data["version"][1])),
            implementation=data["implementation"],
            platform=data["platform"],
            machine=data["machine"],
            mac_ver=data.get("mac_ver", ""),
            libc=(data["libc"][0], data["libc"][1]) if data.get("libc") else ("", ""),
            abiflags=data.get("abiflags", ""),
            gil_disabled=bool(data.get("gil_disabled")),
            extension_suffixes=tuple(data.get("extension_suffixes", ())),
            has_zmq=bool(data.get("has_zmq")),
        )

    @property
    def abi(self) -> str:
        flags = self.abiflags + ("t" if self.gil_disabled and "t" not in self.abiflags else "")
        return f"cp{self.version[0]}{self.version[1]}{flags}"


MSYS2_HINT = (
    "Inkscape for Windows runs extensions with its bundled MSYS2 Python, which cannot load any "
    "pyzmq from PyPI. Make Inkscape use a python.org Python for extensions (README: 'Windows'), "
    "then run install.py again"
)


def wheel_platforms(interp: Interpreter) -> list[str]:
    """The `pip download --platform` values whose wheels `interp` can load. pip widens a macOS tag
    to the older OS versions and universal2 wheels by itself; manylinux tags are listed in full."""
    if interp.platform.startswith("mingw"):
        raise Unsupported(f"Inkscape's Python is an MSYS2 build ({interp.platform})", MSYS2_HINT)
    if interp.implementation != "cpython":
        raise Unsupported(
            f"Inkscape's Python is {interp.implementation}, not CPython",
            "install pyzmq for it with its own package manager, then run install.py again",
        )
    windows = {"win-amd64": "win_amd64", "win32": "win32", "win-arm64": "win_arm64"}
    if interp.platform in windows:
        return [windows[interp.platform]]
    if interp.platform.startswith("macosx-"):
        release = interp.mac_ver or interp.platform.split("-")[1]  # the OS it runs on; else its build target
        major, minor = (int(part) for part in [*release.split("."), "0"][:2])
        return [f"macosx_{major}_{minor if major == 10 else 0}_{interp.machine}"]
    if interp.platform.startswith("linux-") and interp.libc[0] == "glibc":
        arch = interp.platform.split("-", 1)[1]
        glibc_minor = int(interp.libc[1].split(".")[1])
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        tags = []
        for minor in range(glibc_minor, 4, -1):
            tags.append(f"manylinux_2_{minor}_{arch}")
            if minor in legacy:
                tags.append(f"{legacy[minor]}_{arch}")
        return [*tags, f"linux_{arch}"]
    raise Unsupported(
        f"no pyzmq wheels are published for its platform ({interp.platform}, {interp.libc[0] or 'no glibc'})",
        "install pyzmq for it with the system's package manager (Debian/Ubuntu: sudo apt install python3-zmq), "
        "then run install.py again",
    )


def download_command(pip_python: str, interp: Interpreter, dest: str) -> list[str]:
    """The engine's pip fetching the one pyzmq wheel that fits `interp` (no dependencies: it has none)."""
    command = [pip_python, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps"]
    command += ["--only-binary=:all:", "--dest", dest, "--implementation", "cp"]
    command += ["--python-version", f"{interp.version[0]}.{interp.version[1]}", "--abi", interp.abi]
    for tag in wheel_platforms(interp):
        command += ["--platform", tag]
    return [*command, REQUIREMENT]


def unpack_wheel(wheel: Path, dest: Path) -> None:
    """Unpack a wheel as an installer lays it in site-packages: its root, and its .data purelib and
    platlib folders; scripts, headers and data are not needed by an importer. Refuses paths that
    would land outside `dest`."""
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.infolist():
            parts = PurePosixPath(member.filename).parts
            if member.filename.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
                raise Unsupported(f"{wheel.name} holds an unsafe path: {member.filename}", "report this wheel")
            if parts and parts[0].endswith(".data"):
                if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                    continue
                parts = parts[2:]
            target = dest.joinpath(*parts)
            if member.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as source, open(target, "wb") as out:
                shutil.copyfileobj(source, out)


def compiled_modules(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """The extension modules under `folder` that an interpreter with these EXTENSION_SUFFIXES loads."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and any(p.name.endswith(s) for s in suffixes))


IMPORT_CHECK = "import sys; sys.path.insert(0, sys.argv[1]); import zmq; print(zmq.pyzmq_version())"


def vendor_pyzmq(vendor: Path, target_python: str, pip_python: str, run: Runner = subprocess.run) -> str:
    """Make pyzmq importable by `target_python` from `vendor`; returns what was done, in one line.

    Raises Unsupported when no wheel fits, or the one that should fit does not import.
    """
    probe = run([target_python, "-c", PROBE], capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:
        raise Unsupported(
            f"could not run Inkscape's Python ({target_python}): {_last_line(probe.stderr)}",
            "pass the Python Inkscape uses with --inkscape-python PATH",
        )
    interp = Interpreter.from_probe(probe.stdout.strip().splitlines()[-1])
    if interp.has_zmq:
        return f"Inkscape's Python ({target_python}) already has pyzmq"
    with tempfile.TemporaryDirectory(prefix="pyzmq-") as tmp:
        wheels, unpacked = Path(tmp, "wheels"), Path(tmp, "unpacked")
        fetched = run(download_command(pip_python, interp, str(wheels)), capture_output=True, text=True, timeout=600)
        found = sorted(wheels.glob("*.whl")) if fetched.returncode == 0 else []
        if not found:
            raise Unsupported(
                f"pip found no pyzmq wheel for Python {interp.version[0]}.{interp.version[1]} on "
                f"{interp.platform}: {_last_line(fetched.stderr)}",
                "check the network (pip must reach PyPI), or install pyzmq for Inkscape's Python yourself",
            )
        unpacked.mkdir()
        unpack_wheel(found[0], unpacked)
        if not compiled_modules(unpacked / "zmq", interp.extension_suffixes):
            raise Unsupported(
                f"{found[0].name} has no module that Inkscape's Python loads ({', '.join(interp.extension_suffixes)})",
                "install pyzmq for Inkscape's Python yourself",
            )
        check = run([target_python, "-c", IMPORT_CHECK, str(unpacked)], capture_output=True, text=True, timeout=120)
        if check.returncode != 0:
            raise Unsupported(
                f"{found[0].name} does not import under Inkscape's Python: {_last_line(check.stderr)}",
                "install pyzmq for Inkscape's Python yourself",
            )
        for entry in unpacked.iterdir():
            shutil.move(str(entry), str(vendor / entry.name))
    return f"Installed pyzmq {check.stdout.strip()} ({found[0].name}) for Inkscape's Python ({target_python})"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else "no message"
