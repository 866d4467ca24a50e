"""Differentiable rendering of Bézier strokes."""

from .raster import band_coverage, default_segments, rasterize

__all__ = ["rasterize", "band_coverage", "default_segments"]
