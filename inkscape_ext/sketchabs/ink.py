"""Ink strokes from the engine placed in the document: each keeps Inkscape's PowerStroke effect, so
the centre line stays editable with the node tool and the widths with the effect's knots.

The engine writes an ink stroke as a path with `inkscape:original-d` (the centre line), a PowerStroke
effect in its defs (`offset_points`: "t,half-width | ...") and `d` (the outline). Placing it maps the
centre line and the outline with the photo's map, scales the half-widths as stroke widths scale, and
copies the effect into the document's defs under a new id.
"""

from __future__ import annotations

import copy

import inkex

from bridge.inkpath import ORIGINAL_D, PATH_EFFECT


def placed_ink(svg, source_path, matrix: inkex.Transform, width_scale: float):
    """The engine's ink `source_path` placed in `svg` (a PathElement), or None for a pen stroke."""
    reference = source_path.get(PATH_EFFECT, "")
    effect = None
    if reference.startswith("#") and source_path.get(ORIGINAL_D):
        effect = source_path.getroottree().getroot().find(f".//{PATH_EFFECT}[@id='{reference[1:]}']")
    if effect is None:
        return None
    placed_effect = copy.deepcopy(effect)
    placed_effect.set("id", svg.get_unique_id("powerstroke"))
    knots = [knot.split(",") for knot in effect.get("offset_points", "").split("|")]
    placed_effect.set("offset_points", " | ".join(f"{t.strip()},{float(w) * width_scale:.4g}" for t, w in knots))
    svg.defs.append(placed_effect)
    path = inkex.PathElement.new(
        inkex.Path(source_path.get("d")).transform(matrix),
        style=source_path.get("style", ""),
        id=svg.get_unique_id("stroke"),
    )
    path.set(ORIGINAL_D, str(inkex.Path(source_path.get(ORIGINAL_D)).transform(matrix)))
    path.set(PATH_EFFECT, f"#{placed_effect.get('id')}")
    return path
