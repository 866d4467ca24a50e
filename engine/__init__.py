"""Sketch Abstraction engine: CLIPasso and CLIPascene on a diffvg-free differentiable rasteriser."""

import os
from importlib.metadata import PackageNotFoundError, version

# After each parallel region, the OpenMP runtime of Linux's torch (libgomp) spins its worker threads
# for 300,000 rounds before they sleep. On a machine whose cores are busy (a designer's laptop, with
# Inkscape and a browser) the spinning workers take the cores from the threads with work: a CLIPasso
# iteration on 2 busy cores took 3.2x its idle time, 2.2x with 10,000 rounds, with no cost measurable
# idle (benchmarks/clipasso.py --contention; benchmarks/README.md). libgomp reads this once, when torch
# loads, so it is set here, before any engine module imports torch; a value the user set wins.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")

try:
    __version__ = version("sketch-abstraction")  # the one place it is written is pyproject.toml
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
