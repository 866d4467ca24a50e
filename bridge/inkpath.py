"""Ink paths in a document, as Refine Sketch reads and rewrites them: Inkscape's PowerStroke effect.

An ink stroke (engine/powerstroke.py writes them) is a path with `inkscape:original-d` (the centre
line), `inkscape:path-effect` pointing at a PowerStroke effect in the defs whose `offset_points`
("t,half-width | ...") hold the widths, and `d` (the outline, filled). Each path has its own effect,
so the widths of one stroke can be edited alone; a path written here gets a fresh effect and the one
it had is removed once no path uses it.

Standard library only (the light package).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

INKSCAPE_NS = "http://www.inkscape.org/namespaces/inkscape"
SVG_NS = "http://www.w3.org/2000/svg"
ORIGINAL_D = f"{{{INKSCAPE_NS}}}original-d"  # an ink path's centre line
PATH_EFFECT = f"{{{INKSCAPE_NS}}}path-effect"  # on a path: "#id"; in the defs: the effect element
DEFS = f"{{{SVG_NS}}}defs"
INK_FILL = "fill-opacity:1;fill-rule:nonzero;stroke:none"


def effect_of(path: Any) -> Any:
    """The PowerStroke effect element `path` draws with, or None (a pen path, or a missing effect)."""
    reference = path.get(PATH_EFFECT) or ""
    if not (reference.startswith("#") and path.get(ORIGINAL_D)):
        return None
    for effect in path.getroottree().getroot().iter(PATH_EFFECT):
        if effect.get("id") == reference[1:] and effect.get("effect") == "powerstroke":
            return effect
    return None


def half_widths(effect: Any) -> list[float]:
    """The knot half-widths of a PowerStroke effect's `offset_points`, in its path's user units;
    ValueError where they are not numbers."""
    knots = [knot.split(",") for knot in (effect.get("offset_points") or "").split("|")]
    return [float(width) for _t, width in knots]


def set_ink(
    path: Any,
    centre_line: str,
    outline: str,
    effect: dict[str, str],
    knot_half_widths: Sequence[float],
    color: str,
    new_id: Callable[[], str],
) -> None:
    """Make `path` an ink stroke: centre line and outline (path data in its user units), a new
    PowerStroke effect with `effect`'s parameters and the half-widths (user units), filled with `color`."""
    old = effect_of(path)
    defs = _defs(path.getroottree().getroot())
    element = defs.makeelement(PATH_EFFECT, {k: v for k, v in effect.items() if k != "id"})
    element.set("id", new_id())
    m = len(knot_half_widths)
    element.set("offset_points", " | ".join(f"{j / (m - 1):.6g},{w:.6g}" for j, w in enumerate(knot_half_widths)))
    defs.append(element)
    path.set(ORIGINAL_D, centre_line)
    path.set(PATH_EFFECT, f"#{element.get('id')}")
    path.set("d", outline)
    drop_if_unused(old)
    style = _without(path.get("style") or "", ("fill", "fill-opacity", "fill-rule", "stroke"))
    path.set("style", ";".join([*style, f"fill:{color}", INK_FILL]))


def set_pen(path: Any, centre_line: str, width: str | None) -> None:
    """Make `path` a pen stroke with `centre_line` as its data; an ink path loses its effect and
    takes its fill colour as the stroke, `width` (user units) as the stroke width."""
    effect = effect_of(path)
    path.set("d", centre_line)
    if path.get(ORIGINAL_D) is None:
        return
    color = _declarations(path.get("style") or "").get("fill", "#000000")
    path.attrib.pop(ORIGINAL_D, None)
    path.attrib.pop(PATH_EFFECT, None)
    drop_if_unused(effect)
    style = _without(path.get("style") or "", ("fill", "fill-opacity", "fill-rule", "stroke", "stroke-width"))
    pen = [f"fill:none;stroke:{color}", *([f"stroke-width:{width}"] if width else [])]
    path.set("style", ";".join([*style, *pen, "stroke-linecap:round;stroke-linejoin:round"]))


def _defs(root: Any) -> Any:
    defs = root.find(DEFS)
    if defs is None:
        defs = root.makeelement(DEFS, {})
        root.insert(0, defs)
    return defs


def drop_if_unused(effect: Any) -> None:
    """Remove a path's former effect from the defs unless another path still draws with it."""
    if effect is None or effect.getparent() is None:
        return
    reference = f"#{effect.get('id')}"
    if not any(e.get(PATH_EFFECT) == reference for e in effect.getroottree().getroot().iter(f"{{{SVG_NS}}}path")):
        effect.getparent().remove(effect)


def _declarations(style: str) -> dict[str, str]:
    out = {}
    for declaration in style.split(";"):
        name, colon, value = declaration.partition(":")
        if colon:
            out[name.strip()] = value.strip()
    return out


def _without(style: str, names: Sequence[str]) -> list[str]:
    return [d for d in style.split(";") if d.strip() and d.partition(":")[0].strip() not in names]
