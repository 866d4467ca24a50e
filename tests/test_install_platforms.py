"""install.py's platform decisions (installer/), each with the platform and environment faked, so
that the Windows and macOS answers are checked here on Linux; and the pyzmq wheels for Inkscape's
Python fetched for real for Windows and macOS interpreters, checked with packaging.tags."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import tempfile
import venv
import zipfile
from pathlib import Path

import pytest
from packaging.tags import cpython_tags, mac_platforms
from packaging.utils import parse_wheel_filename

from installer import engine, locate
from installer.pyzmq import Interpreter, Unsupported, compiled_modules, download_command, unpack_wheel, wheel_platforms

ROOT = Path(__file__).resolve().parent.parent
PROGRAM_FILES_INKSCAPE = r"C:\Program Files\Inkscape\bin\inkscape.exe"


# -- where Inkscape is -----------------------------------------------------------------------------


def test_windows_inkscape_from_path_then_registry_then_program_files():
    environ = {"PROGRAMW6432": r"D:\Programme", "ProgramFiles": r"D:\Programme (x86)"}  # case as Windows has it
    registry = [r"E:\Grafik\Inkscape\bin\inkscape.exe"]
    found = locate.inkscape_candidates("win32", environ, r"C:\Users\Zoë", None, registry)
    assert found == [
        r"E:\Grafik\Inkscape\bin\inkscape.exe",
        r"D:\Programme\Inkscape\bin\inkscape.exe",
        r"D:\Programme (x86)\Inkscape\bin\inkscape.exe",
    ]
    on_path = r"C:\Tools\Inkscape\bin\inkscape.com"
    assert locate.inkscape_candidates("win32", {}, r"C:\Users\Zoë", on_path, [])[:2] == [
        on_path,
        PROGRAM_FILES_INKSCAPE,
    ]


def test_macos_inkscape_in_applications_and_the_users_applications(tmp_path):
    found = locate.inkscape_candidates("darwin", {}, str(tmp_path), None, [])
    assert found == [
        "/Applications/Inkscape.app/Contents/MacOS/inkscape",
        str(tmp_path / "Applications/Inkscape.app/Contents/MacOS/inkscape"),
    ]
    assert locate.inkscape_candidates("linux", {}, str(tmp_path), None, []) == []  # Linux: PATH only


def test_inkscape_is_asked_through_its_console_executable_on_windows():
    assert locate.console_inkscape(PROGRAM_FILES_INKSCAPE, "win32") == r"C:\Program Files\Inkscape\bin\inkscape.com"
    assert locate.console_inkscape("/usr/bin/inkscape", "linux") == "/usr/bin/inkscape"


# -- the profile -----------------------------------------------------------------------------------


def test_default_profiles_per_platform(tmp_path):
    appdata = r"C:\Users\Zoë Müller\AppData\Roaming"
    assert locate.default_profile("win32", {"APPDATA": appdata}, r"C:\Users\Zoë Müller") == appdata + r"\inkscape"
    assert locate.default_profile("win32", {}, r"C:\Users\Zoë Müller") == appdata + r"\inkscape"
    assert locate.default_profile("darwin", {}, str(tmp_path)) == str(
        tmp_path / "Library" / "Application Support" / "org.inkscape.Inkscape" / "config" / "inkscape"
    )
    assert locate.default_profile("linux", {}, str(tmp_path)) == str(tmp_path / ".config" / "inkscape")
    xdg = str(tmp_path / "xdg")
    assert locate.default_profile("linux", {"XDG_CONFIG_HOME": xdg}, str(tmp_path)) == str(
        tmp_path / "xdg" / "inkscape"
    )


def test_profile_option_then_environment_then_inkscapes_answer_then_default():
    home, said = r"C:\Users\Zoë", "some warning\r\nC:\\Users\\Zoë\\AppData\\Roaming\\inkscape\r\n"
    ask = functools.partial(locate.profile_dir, platform="win32", home=home)
    assert ask(r"D:\my profile", environ={"INKSCAPE_PROFILE_DIR": "x"}, inkscape_found=True, inkscape_says=said) == (
        r"D:\my profile"
    )
    assert ask(None, environ={"INKSCAPE_PROFILE_DIR": r"D:\p"}, inkscape_found=True, inkscape_says=said) == r"D:\p"
    assert ask(None, environ={}, inkscape_found=True, inkscape_says=said) == r"C:\Users\Zoë\AppData\Roaming\inkscape"
    assert ask(None, environ={"APPDATA": r"F:\roam"}, inkscape_found=True, inkscape_says=None) == r"F:\roam\inkscape"
    assert ask(None, environ={}, inkscape_found=False, inkscape_says=None) is None


# -- the Python Inkscape runs extensions with ------------------------------------------------------

PYTHON_ORG = r"C:\Users\Zoë\AppData\Local\Programs\Python\Python312\pythonw.exe"


def preferences(interpreter: str, attribute: str = "python-interpreter") -> str:
    """Inkscape's preferences.xml, as Inkscape writes it, with the extensions' interpreter set."""
    return f"""<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<inkscape version="1">
  <group id="window" />
  <group id="extensions" org.inkscape.foo.size="3" {attribute}="{interpreter}" />
</inkscape>
"""


def test_the_interpreter_preference_is_read_from_preferences_xml():
    assert locate.interpreter_preference(preferences(PYTHON_ORG)) == PYTHON_ORG
    assert locate.interpreter_preference(preferences(PYTHON_ORG, attribute="other")) is None
    assert locate.interpreter_preference("<inkscape><group id=") is None  # damaged: ignored, not fatal


def test_inkscapes_python_per_platform():
    windows = locate.python_candidates("win32", PROGRAM_FILES_INKSCAPE, None, None)
    assert windows == [r"C:\Program Files\Inkscape\bin\pythonw.exe", r"C:\Program Files\Inkscape\bin\python.exe"]
    preferred = r"C:\Python312\pythonw.exe"
    assert locate.python_candidates("win32", PROGRAM_FILES_INKSCAPE, preferred, None)[0] == preferred
    mac = locate.python_candidates("darwin", "/Applications/Inkscape.app/Contents/MacOS/inkscape", None, None)
    assert mac[0] == "/Applications/Inkscape.app/Contents/Frameworks/Python.framework/Versions/Current/bin/python3"
    assert locate.python_candidates("linux", "/usr/bin/inkscape", None, "/usr/local/bin/python3") == [
        "/usr/bin/python3",  # what Inkscape's Linux packages run, not the PATH's python3
        "/usr/local/bin/python3",
    ]


# -- which pyzmq wheel -----------------------------------------------------------------------------


def interpreter(kind: str, minor: int) -> Interpreter:
    """What a CPython 3.<minor> on Windows, an Apple-silicon Mac or an Intel Mac says about itself."""
    if kind == "win_amd64":
        return Interpreter(
            (3, minor), "cpython", "win-amd64", "AMD64", extension_suffixes=(f".cp3{minor}-win_amd64.pyd", ".pyd")
        )
    suffixes = (f".cpython-3{minor}-darwin.so", ".abi3.so", ".so")
    if kind == "macos_arm64":
        return Interpreter((3, minor), "cpython", "macosx-11.0-arm64", "arm64", "14.5", extension_suffixes=suffixes)
    return Interpreter((3, minor), "cpython", "macosx-10.9-universal2", "x86_64", "13.6.1", extension_suffixes=suffixes)


def supported_tags(interp: Interpreter) -> set[str]:
    """packaging's own answer to 'which wheels load here' (the oracle: not our code)."""
    if interp.platform.startswith("win"):
        platforms = ["win_amd64"]
    else:
        major, minor = (int(x) for x in interp.mac_ver.split(".")[:2])
        platforms = list(mac_platforms((major, minor), interp.machine))
    return {str(tag) for tag in cpython_tags(interp.version, [f"cp3{interp.version[1]}"], platforms)}


def test_windows_and_macos_wheel_requests():
    assert wheel_platforms(interpreter("win_amd64", 11)) == ["win_amd64"]
    assert wheel_platforms(interpreter("macos_arm64", 11)) == ["macosx_14_0_arm64"]  # pip widens to 11.0, universal2
    assert wheel_platforms(interpreter("macos_x86_64", 11)) == ["macosx_13_0_x86_64"]
    old = Interpreter((3, 10), "cpython", "macosx-10.9-x86_64", "x86_64", "10.15.7")
    assert wheel_platforms(old) == ["macosx_10_15_x86_64"]
    command = download_command("py", interpreter("win_amd64", 12), "out")
    assert command[command.index("--python-version") + 1] == "3.12" and command[command.index("--abi") + 1] == "cp312"
    assert "--only-binary=:all:" in command and command[command.index("--implementation") + 1] == "cp"


def test_linux_wheel_request_covers_every_manylinux_tag_of_its_glibc():
    interp = Interpreter((3, 11), "cpython", "linux-x86_64", "x86_64", libc=("glibc", "2.36"))
    tags = wheel_platforms(interp)
    assert {"manylinux_2_36_x86_64", "manylinux_2_28_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64"} <= set(tags)
    assert "manylinux_2_37_x86_64" not in tags and tags[-1] == "linux_x86_64"


def test_inkscapes_msys2_python_on_windows_is_named_with_the_way_out():
    """Inkscape for Windows bundles MSYS2's Python: PyPI's win_amd64 wheels do not load in it."""
    msys2 = Interpreter(
        (3, 11), "cpython", "mingw_x86_64_ucrt", "AMD64", extension_suffixes=(".cp311-mingw_x86_64_ucrt.pyd",)
    )
    with pytest.raises(Unsupported) as refused:
        wheel_platforms(msys2)
    assert "MSYS2" in refused.value.message and "python.org Python" in refused.value.hint
    with pytest.raises(Unsupported):
        wheel_platforms(Interpreter((3, 10), "pypy", "linux-x86_64", "x86_64", libc=("glibc", "2.36")))


def test_the_abi_tag_follows_the_build():
    assert Interpreter((3, 11), "cpython", "win-amd64", "AMD64").abi == "cp311"
    assert Interpreter((3, 13), "cpython", "win-amd64", "AMD64", gil_disabled=True).abi == "cp313t"
    assert Interpreter((3, 13), "cpython", "linux-x86_64", "x86_64", abiflags="t", gil_disabled=True).abi == "cp313t"


def make_wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_a_wheel_unpacks_as_installed_and_cannot_escape(tmp_path):
    wheel = make_wheel(
        tmp_path / "x-1-py3-none-any.whl",
        {
            "x/__init__.py": b"",
            "x-1.data/platlib/x_native.so": b"\x7fELF",
            "x-1.data/scripts/x-tool": b"#!/bin/sh",
            "x-1.dist-info/RECORD": b"",
        },
    )
    unpack_wheel(wheel, tmp_path / "out")
    assert sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file()) == [
        "x-1.dist-info/RECORD",
        "x/__init__.py",
        "x_native.so",
    ]
    evil = make_wheel(tmp_path / "evil-1-py3-none-any.whl", {"../outside.py": b"print('escaped')"})
    with pytest.raises(Unsupported, match="unsafe path"):
        unpack_wheel(evil, tmp_path / "evil")
    assert not (tmp_path / "outside.py").exists()


# -- the wheels themselves, fetched with the engine's pip ------------------------------------------


@functools.cache
def registry_reachable() -> str:
    """'' when pip reaches the package registry (checked by fetching this machine's own pyzmq), else why not."""
    with tempfile.TemporaryDirectory() as dest:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", dest, "pyzmq"],
            capture_output=True,
            text=True,
            timeout=300,
        )
    return "" if done.returncode == 0 else (done.stderr.strip().splitlines() or ["pip failed"])[-1]


@pytest.fixture
def network():
    reason = registry_reachable()
    if reason:
        pytest.skip(f"the package registry is unreachable from pip here ({reason})")


MACHO = {b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe"}  # 64-bit Mach-O, universal (fat) binary


@pytest.mark.network  # downloads from PyPI
@pytest.mark.slow
@pytest.mark.parametrize("minor", [10, 11, 12])
@pytest.mark.parametrize("kind", ["win_amd64", "macos_arm64", "macos_x86_64"])
def test_the_chosen_pyzmq_wheel_loads_in_the_target_interpreter(kind, minor, tmp_path, network):
    interp = interpreter(kind, minor)
    done = subprocess.run(
        download_command(sys.executable, interp, str(tmp_path)), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("*.whl")
    _, _, _, tags = parse_wheel_filename(wheel.name)
    assert {str(t) for t in tags} & supported_tags(interp), f"{wheel.name} does not load in {interp}"
    unpack_wheel(wheel, tmp_path / "vendor")
    modules = compiled_modules(tmp_path / "vendor" / "zmq", interp.extension_suffixes)
    assert modules and any(m.name.startswith("_zmq.") for m in modules), sorted((tmp_path / "vendor").rglob("*"))
    magic = modules[0].read_bytes()[:4]
    assert magic[:2] == b"MZ" if kind == "win_amd64" else magic in MACHO, (modules[0], magic)


# -- install.py as a user runs it ------------------------------------------------------------------


def run_install(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, str(ROOT / "install.py"), "--skip-engine", "--models", "tiny-random", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.network  # downloads from PyPI
@pytest.mark.slow
def test_install_puts_a_pyzmq_that_inkscapes_python_imports_in_vendor(tmp_path, network):
    """An interpreter without pyzmq (a bare venv stands in for Inkscape's Python) gets one that it
    really imports; the extension's folder ends up with it and nothing else changes."""
    bare = tmp_path / "bare python"
    venv.create(bare, with_pip=False)
    python = engine.venv_python(str(bare), sys.platform)
    assert subprocess.run([python, "-c", "import zmq"], capture_output=True).returncode != 0
    profile = tmp_path / "profile"
    out = run_install("--profile", str(profile), "--inkscape-python", python)
    assert out.returncode == 0, out.stderr
    assert "Installed pyzmq" in out.stdout and "warning" not in out.stdout, out.stdout
    vendor = profile / "extensions" / "sketch-abstraction" / "vendor"
    imported = subprocess.run(
        [python, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import zmq; print(zmq.__file__)", str(vendor)],
        capture_output=True,
        text=True,
    )
    assert imported.returncode == 0 and imported.stdout.startswith(str(vendor)), imported.stderr


shell_scripts = pytest.mark.skipif(sys.platform == "win32", reason="the fake interpreter is a shell script")


def fake_python(tmp_path: Path, answer: dict) -> str:
    """A program that answers install.py's probe as another interpreter would."""
    script = tmp_path / "fake python"
    script.write_text(f"#!/bin/sh\necho '{json.dumps(answer)}'\n")
    script.chmod(0o755)
    return str(script)


@shell_scripts
def test_install_with_inkscapes_msys2_python_says_what_to_do_and_keeps_the_rest(tmp_path):
    msys2 = fake_python(
        tmp_path,
        {"version": [3, 11], "implementation": "cpython", "platform": "mingw_x86_64_ucrt", "machine": "AMD64",
         "extension_suffixes": [".cp311-mingw_x86_64_ucrt.pyd"], "has_zmq": False},
    )  # fmt: skip
    profile = tmp_path / "profile"
    out = run_install("--profile", str(profile), "--inkscape-python", msys2)
    assert out.returncode == 0, out.stderr
    assert "MSYS2" in out.stdout and "python.org Python" in out.stdout and "fix:" in out.stdout, out.stdout
    ext = profile / "extensions" / "sketch-abstraction"
    assert sorted(p.name for p in (ext / "vendor").iterdir()) == ["bridge", "platformdirs"]
    assert "Installed the Inkscape extension" in out.stdout


@pytest.mark.network  # downloads from PyPI
@pytest.mark.slow
@shell_scripts
def test_a_wheel_that_would_not_load_is_not_kept(tmp_path, network):
    """The interpreter says it loads only modules of another suffix: the fetched wheel is refused
    before anything reaches vendor/, with a warning instead of a broken import later."""
    answer = {
        "version": list(sys.version_info[:2]), "implementation": "cpython", "platform": "linux-x86_64",
        "machine": "x86_64", "libc": ["glibc", "2.36"], "extension_suffixes": [".cpython-3x-elsewhere.so"],
        "has_zmq": False,
    }  # fmt: skip
    profile = tmp_path / "profile"
    out = run_install("--profile", str(profile), "--inkscape-python", fake_python(tmp_path, answer))
    assert out.returncode == 0 and "has no module that Inkscape's Python loads" in out.stdout, out.stdout + out.stderr
    assert sorted(p.name for p in (profile / "extensions" / "sketch-abstraction" / "vendor").iterdir()) == [
        "bridge",
        "platformdirs",
    ]


@shell_scripts
def test_install_reads_the_interpreter_from_inkscapes_preferences(tmp_path):
    """A user who pointed Inkscape at another Python (preferences.xml) gets pyzmq for that one."""
    answer = {"version": [3, 12], "implementation": "cpython", "platform": "linux-x86_64", "machine": "x86_64",
              "has_zmq": True}  # fmt: skip
    chosen = fake_python(tmp_path, answer)
    profile = tmp_path / "profile"
    profile.mkdir()
    (profile / "preferences.xml").write_text(preferences(chosen), encoding="utf-8")
    out = run_install("--profile", str(profile))
    assert out.returncode == 0 and f"Inkscape's Python ({chosen}) already has pyzmq" in out.stdout, out.stdout


# -- the engine's environment ----------------------------------------------------------------------


def test_engine_programs_per_platform():
    home = r"C:\Users\Zoë Müller\sketch abstraction\.venv"
    assert engine.venv_python(home, "win32") == home + r"\Scripts\python.exe"
    assert engine.venv_program(home, "sketch-abstraction", "win32") == home + r"\Scripts\sketch-abstraction.exe"
    assert engine.venv_program("/tmp/x/.venv", "sketch-abstraction", "darwin") == "/tmp/x/.venv/bin/sketch-abstraction"


def test_a_cuda_index_installs_torch_alone_from_it():
    assert engine.torch_commands("python", "constraints.txt", None) == []
    (command,) = engine.torch_commands("python", "constraints.txt", engine.CUDA_INDEX_EXAMPLE)
    assert command[command.index("--index-url") + 1] == engine.CUDA_INDEX_EXAMPLE
    assert command[-2:] == ["torch", "torchvision"] and command[command.index("-c") + 1] == "constraints.txt"


def test_torch_advice_names_the_cuda_index_where_pypi_has_no_cuda_build():
    advice = engine.torch_advice("win32", "AMD64", nvidia_gpu=True, torch_index=None)
    assert advice and "--torch-index" in advice and engine.CUDA_INDEX_EXAMPLE in advice
    assert engine.torch_advice("win32", "AMD64", nvidia_gpu=True, torch_index=engine.CUDA_INDEX_EXAMPLE) is None
    assert engine.torch_advice("win32", "AMD64", nvidia_gpu=False, torch_index=None) is None
    assert engine.torch_advice("linux", "x86_64", nvidia_gpu=True, torch_index=None) is None  # PyPI's is CUDA
    assert engine.torch_advice("darwin", "arm64", nvidia_gpu=False, torch_index=None) is None  # MPS
    assert "Intel Macs" in engine.torch_advice("darwin", "x86_64", nvidia_gpu=False, torch_index=None)


# -- GTK bindings for the extension's windows ----------------------------------------------------------


def test_missing_gtk_bindings_are_found_and_the_one_command_is_named():
    """Real interpreters: this venv's Python has no PyGObject; Inkscape 1.2's /usr/bin/python3 has it
    where the tests run (scripts/setup.sh installs python3-gi)."""
    from installer import gtk

    debian = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n'
    said = gtk.advice(sys.executable, "linux", debian)
    assert said and f"Inkscape's Python ({sys.executable}) has no GTK 3 bindings" in said
    assert said.endswith("To add them, run: sudo apt install python3-gi gir1.2-gtk-3.0"), said
    if gtk.has_gtk("/usr/bin/python3"):
        assert gtk.advice("/usr/bin/python3", "linux", debian) is None
    assert gtk.advice("/nonexistent/python3", "linux", debian) is None, "an interpreter that cannot run: no guess"
    assert gtk.install_command("ID=linuxmint\nID_LIKE=ubuntu debian\n") == "sudo apt install python3-gi gir1.2-gtk-3.0"
    assert gtk.install_command('ID="fedora"\n') == "sudo dnf install python3-gobject gtk3"
    assert gtk.install_command("ID=endeavouros\nID_LIKE=arch\n") == "sudo pacman -S python-gobject gtk3"
    assert gtk.install_command('ID="opensuse-tumbleweed"\nID_LIKE="opensuse suse"\n').startswith("sudo zypper")
    assert gtk.install_command("ID=gentoo\n") is None
    elsewhere = gtk.advice(sys.executable, "darwin", "")
    assert elsewhere and "sudo" not in elsewhere and "inkscape.org" in elsewhere


def test_install_names_the_gtk_command_when_inkscapes_python_lacks_the_bindings(tmp_path):
    command = [sys.executable, str(ROOT / "install.py"), "--skip-engine", "--profile", str(tmp_path / "profile")]
    out = subprocess.run([*command, "--inkscape-python", sys.executable], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "has no GTK 3 bindings" in out.stdout and "Installed the Inkscape extension" in out.stdout
    if Path("/etc/os-release").read_text().find("debian") >= 0:
        assert "To add them, run: sudo apt install python3-gi gir1.2-gtk-3.0" in out.stdout, out.stdout
