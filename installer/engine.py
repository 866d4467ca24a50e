"""The engine's virtual environment: where its programs are, and which PyTorch build it gets."""

from __future__ import annotations

from installer.locate import pure

# PyTorch's own index of CUDA builds; the part after /whl/ names the CUDA version (README: "Windows").
CUDA_INDEX_EXAMPLE = "https://download.pytorch.org/whl/cu126"


def venv_program(venv: str, name: str, platform: str) -> str:
    """A program of a virtual environment: Scripts\\NAME.exe on Windows, bin/NAME elsewhere."""
    if platform == "win32":
        return str(pure(platform)(venv, "Scripts", f"{name}.exe"))
    return str(pure(platform)(venv, "bin", name))


def venv_python(venv: str, platform: str) -> str:
    return venv_program(venv, "python", platform)


def torch_commands(python: str, constraints: str, torch_index: str | None) -> list[list[str]]:
    """pip commands that install torch and torchvision from `torch_index` (e.g. a CUDA build for
    Windows, where PyPI's torch is CPU-only) before the engine, which then finds them installed.
    Only these two come from that index: everything else stays on PyPI. Nothing without an index."""
    if not torch_index:
        return []
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-c", constraints]
    return [[*pip, "--index-url", torch_index, "torch", "torchvision"]]


def torch_advice(platform: str, machine: str, nvidia_gpu: bool, torch_index: str | None) -> str | None:
    """What to tell the user about their PyTorch build, or None when the default is right.

    Linux: PyPI's torch is a CUDA build. macOS on Apple silicon: PyPI's torch has MPS. Windows:
    PyPI's torch is CPU-only, so an NVIDIA GPU goes unused without a CUDA index. Intel Macs: PyTorch
    stopped publishing macOS x86_64 builds after 2.2.
    """
    if platform == "win32" and nvidia_gpu and not torch_index:
        return (
            "note: an NVIDIA GPU is here, but PyPI's PyTorch for Windows is CPU-only. For the GPU, run "
            f"install.py again with --torch-index {CUDA_INDEX_EXAMPLE} (the CUDA version your driver supports)"
        )
    if platform == "darwin" and machine == "x86_64":
        return (
            "note: PyTorch publishes no builds for Intel Macs after 2.2, older than this engine needs; "
            "if the install fails, use a Mac with Apple silicon, Linux or Windows"
        )
    return None
