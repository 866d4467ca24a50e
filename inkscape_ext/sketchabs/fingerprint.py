"""Whether a sketch layer is still exactly as an effect inserted it.

Replace only ever replaces a sketch nobody has touched: the effect records a fingerprint of what it
inserted on the sketch's top layer, and compares it at replace time. The fingerprint covers what a
designer's work changes: every path's geometry and style, every transform, Inkscape's lock
(sodipodi:insensitive) on any element, and which elements there are. It leaves out what only looks
at the sketch: which level layers are shown (their style) and names (labels, ids). Numbers are
rounded, so that a program that rewrites the same path with other formatting does not count as an
edit. A layer without a fingerprint (made by an earlier version, or copied by hand) counts as touched:
when in doubt the designer's work is kept.
"""

from __future__ import annotations

import hashlib
import re

import inkex

from bridge.sketchlayer import INSENSITIVE, PATH

FINGERPRINT = "data-sketch-fingerprint"
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def fingerprint(layer) -> str:
    """A short hash of what a designer's edit of `layer` (a sketch's top layer) changes."""
    digest = hashlib.sha256()
    for element in layer.iter():
        if not isinstance(element.tag, str):  # comments, processing instructions
            continue
        parts = [element.tag, _numbers(element.attrib.get("transform", "")), element.attrib.get(INSENSITIVE, "")]
        if element.tag == PATH:
            style = inkex.Style(element.attrib.get("style", ""))
            parts += [_numbers(element.attrib.get("d", "")), ";".join(f"{k}:{v}" for k, v in sorted(style.items()))]
        digest.update("\x1f".join(parts).encode("utf-8") + b"\x1e")
    return digest.hexdigest()[:24]


def stamp(layer) -> None:
    """Record that `layer` is as inserted."""
    layer.set(FINGERPRINT, fingerprint(layer))


def untouched(layer) -> bool:
    """Whether `layer` is still as it was stamped."""
    recorded = layer.get(FINGERPRINT)
    return recorded is not None and recorded == fingerprint(layer)


def _numbers(text: str) -> str:
    """`text` with every number rounded to 3 decimals: the same geometry, whatever its formatting."""
    return _NUMBER.sub(lambda m: f"{round(float(m[0]), 3):g}", text)
