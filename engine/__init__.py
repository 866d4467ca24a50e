"""Sketch Abstraction engine: CLIPasso and CLIPascene on a diffvg-free differentiable rasteriser."""

__version__ = "0.1.0"
