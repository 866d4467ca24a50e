"""Where Inkscape, its profile and the Python it runs extensions with are, per platform.

Each function decides from what it is given (platform, environment, what was found) and returns
paths as strings in the target platform's own form, so Windows answers are checked on Linux.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from pathlib import PurePath, PurePosixPath, PureWindowsPath

MAC_APP = "/Applications/Inkscape.app"
# Inkscape's Windows installer records its executable here (machine-wide in HKLM, per user in HKCU).
WINDOWS_APP_PATHS_KEY = r"Software\Microsoft\Windows\CurrentVersion\App Paths\inkscape.exe"


def pure(platform: str) -> type[PurePath]:
    return PureWindowsPath if platform == "win32" else PurePosixPath


def env(environ: Mapping[str, str], name: str) -> str | None:
    """An environment variable, by name in any case (Windows names are case-insensitive); "" is unset."""
    folded = name.casefold()
    return next((value for key, value in environ.items() if key.casefold() == folded and value), None)


def inkscape_candidates(
    platform: str, environ: Mapping[str, str], home: str, on_path: str | None, registry: list[str]
) -> list[str]:
    """Where Inkscape's executable may be, best first: on PATH, then where its installers put it
    (Windows: the App Paths registry values, then Program Files; macOS: /Applications, ~/Applications)."""
    found = [on_path] if on_path else []
    if platform == "darwin":
        found += [
            f"{MAC_APP}/Contents/MacOS/inkscape",
            str(PurePosixPath(home, MAC_APP[1:], "Contents/MacOS/inkscape")),
        ]
    elif platform == "win32":
        found += registry
        for variable, default in (
            ("ProgramW6432", None),
            ("ProgramFiles", r"C:\Program Files"),
            ("ProgramFiles(x86)", None),
        ):
            base = env(environ, variable) or default
            if base:
                found.append(str(PureWindowsPath(base, "Inkscape", "bin", "inkscape.exe")))
    return list(dict.fromkeys(found))


def console_inkscape(inkscape: str, platform: str) -> str:
    """The executable to ask questions on the command line. On Windows inkscape.exe is a GUI program
    whose output may never reach a pipe; the inkscape.com beside it is its console twin."""
    if platform == "win32":
        path = PureWindowsPath(inkscape)
        if path.suffix.lower() == ".exe":
            return str(path.with_suffix(".com"))
    return inkscape


def default_profile(platform: str, environ: Mapping[str, str], home: str) -> str:
    """Inkscape's profile folder when Inkscape cannot be asked (Inkscape 1.x's own defaults)."""
    if platform == "win32":
        return str(PureWindowsPath(env(environ, "APPDATA") or PureWindowsPath(home, "AppData", "Roaming"), "inkscape"))
    if platform == "darwin":
        return str(PurePosixPath(home, "Library/Application Support/org.inkscape.Inkscape/config/inkscape"))
    return str(PurePosixPath(env(environ, "XDG_CONFIG_HOME") or PurePosixPath(home, ".config"), "inkscape"))


def profile_dir(
    option: str | None,
    platform: str,
    environ: Mapping[str, str],
    home: str,
    inkscape_found: bool,
    inkscape_says: str | None,
) -> str | None:
    """The profile whose extensions/ Inkscape reads: --profile, else $INKSCAPE_PROFILE_DIR (which
    replaces the whole profile), else what `inkscape --user-data-directory` printed, else the
    platform's default; None when there is no Inkscape and no folder was named."""
    if option:
        return option
    if env(environ, "INKSCAPE_PROFILE_DIR"):
        return env(environ, "INKSCAPE_PROFILE_DIR")
    if not inkscape_found:
        return None
    said = (inkscape_says or "").strip().splitlines()
    return said[-1].strip() if said else default_profile(platform, environ, home)


def interpreter_preference(preferences_xml: str) -> str | None:
    """The `python-interpreter` a user set in Inkscape's preferences.xml (on its extensions group),
    which Inkscape then runs every Python extension with; None when unset or unreadable."""
    try:
        root = ElementTree.fromstring(preferences_xml)
    except ElementTree.ParseError:
        return None
    for group in root.iter("group"):
        if group.get("id") == "extensions" and group.get("python-interpreter"):
            return group.get("python-interpreter")
    return None


def python_candidates(
    platform: str, inkscape: str | None, preference: str | None, python3_on_path: str | None
) -> list[str]:
    """The Python Inkscape runs extensions with, best first: the user's preference, else the one
    Inkscape ships (Windows: pythonw.exe beside inkscape.exe, an MSYS2 build; macOS: the
    Python.framework inside Inkscape.app, `inkscape` being the real path, links resolved), else
    the system's python3 (Linux packages: /usr/bin/python3, not the PATH's), else python3 on PATH."""
    found = [preference] if preference else []
    if platform == "win32" and inkscape:
        found += [str(PureWindowsPath(inkscape).with_name(name)) for name in ("pythonw.exe", "python.exe")]
    elif platform == "darwin" and inkscape:
        contents = PurePosixPath(inkscape).parent.parent  # Inkscape.app/Contents/MacOS/inkscape
        found += [
            str(contents / "Frameworks/Python.framework/Versions/Current/bin/python3"),
            str(contents / "Resources/bin/python3"),
        ]
    elif platform != "win32":
        found.append("/usr/bin/python3")
    if platform != "win32" and python3_on_path:
        found.append(python3_on_path)
    return list(dict.fromkeys(found))
