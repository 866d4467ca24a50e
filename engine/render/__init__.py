"""Differentiable rendering of Bézier strokes."""

from collections.abc import Callable

from .raster import band_coverage, default_segments, rasterize, rasterize_tapered

__all__ = ["band_coverage", "default_segments", "rasterize", "rasterize_tapered", "rasterizer"]


def rasterizer(name: str) -> Callable:
    """The rasteriser called `name` (bridge.params.RENDERERS): "ours", or "diffvg" for parity runs."""
    if name == "diffvg":
        from . import diffvg

        return diffvg.rasterize
    if name != "ours":
        raise ValueError(f"unknown renderer {name!r}")
    return rasterize
