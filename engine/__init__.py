"""Sketch Abstraction engine: CLIPasso and CLIPascene on a diffvg-free differentiable rasteriser."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sketch-abstraction")  # the one place it is written is pyproject.toml
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
