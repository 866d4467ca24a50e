"""The animated SVG: the chosen strokes, copied as they are (paths, with their styles and Inkscape's
PowerStroke effects), drawn on one after another with CSS animations, which browsers play.

A pen stroke draws on through its dash offset (pathLength="1": the dash is the whole stroke). An ink
stroke is a filled outline, which a dash cannot draw: it is revealed through a mask whose own
stroke, along the ink's centre line and wider than the ink, draws on the same way. Before its turn
every stroke is hidden (its dash sits past the end of the path, caps included) and afterwards it
stays (animation-fill-mode: both).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

from lxml import etree

from bridge.svgtransform import IDENTITY
from engine.motion.plan import Plan
from engine.svg import SVG_NS, XLINK_NS

_NSMAP = {None: SVG_NS, "xlink": XLINK_NS}
_CSS = """
@keyframes sketchabs-draw { from { stroke-dashoffset: 1.05; } to { stroke-dashoffset: 0; } }
.sketchabs-draw { stroke-dasharray: 1 1.1; animation-name: sketchabs-draw;
  animation-timing-function: linear; animation-fill-mode: both; }
"""


def animated_svg(plan: Plan, out: Path) -> bytes:
    """The animated SVG of `plan`, to be written at `out` (a linked photo is linked relative to it)."""
    source = plan.root
    x, y, w, h = plan.view_box
    root = etree.Element(
        f"{{{SVG_NS}}}svg",
        {
            "version": "1.1",
            "width": source.get("width") or f"{w:g}",
            "height": source.get("height") or f"{h:g}",
            "viewBox": f"{x:g} {y:g} {w:g} {h:g}",
        },
        nsmap={**_NSMAP, **{k: v for k, v in source.nsmap.items() if k}},
    )
    style = etree.SubElement(root, f"{{{SVG_NS}}}style")
    style.text = _CSS
    for defs in source.iter(f"{{{SVG_NS}}}defs"):  # PowerStroke effects: the ink stays editable in Inkscape
        root.append(copy.deepcopy(defs))
    _background(root, plan, out)
    for index, stroke in enumerate(plan.strokes):
        holder = _transformed(root, stroke.to_document)
        path = copy.deepcopy(stroke.element)
        timing = f"animation-duration:{stroke.seconds:.3f}s;animation-delay:{stroke.start:.3f}s"
        if stroke.drawn.ink is None:
            path.set("pathLength", "1")
            path.set("class", "sketchabs-draw")
            path.set("style", f"{path.get('style', '').rstrip(';')};{timing}".lstrip(";"))
        else:
            mask_id = f"sketchabs-reveal-{index}"
            mask = etree.SubElement(holder, f"{{{SVG_NS}}}mask", {"id": mask_id, "maskUnits": "userSpaceOnUse"})
            mask.attrib.update({"x": f"{x - w:g}", "y": f"{y - h:g}", "width": f"{3 * w:g}", "height": f"{3 * h:g}"})
            etree.SubElement(
                mask,
                f"{{{SVG_NS}}}path",
                {
                    "d": _centre_line(stroke.drawn.points),
                    "pathLength": "1",
                    "class": "sketchabs-draw",
                    "style": f"fill:none;stroke:#ffffff;stroke-width:{2 * float(stroke.drawn.ink.max()) + 2:g};"
                    f"stroke-linecap:round;{timing}",
                },
            )
            path.set("mask", f"url(#{mask_id})")
        holder.append(path)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _transformed(root: etree._Element, matrix) -> etree._Element:
    """A group carrying the map from a stroke's user units to the document's (the root itself if none)."""
    if tuple(matrix) == IDENTITY:
        return root
    return etree.SubElement(root, f"{{{SVG_NS}}}g", transform=f"matrix({' '.join(f'{v:g}' for v in matrix)})")


def _centre_line(points) -> str:
    command = {4: "C", 3: "Q", 2: "L"}[len(points)]
    head, *rest = (f"{px:g} {py:g}" for px, py in points)
    return f"M {head} {command} {' '.join(rest)}"


def _background(root: etree._Element, plan: Plan, out: Path) -> None:
    x, y, w, h = plan.view_box
    if plan.params.background == "white":
        etree.SubElement(
            root,
            f"{{{SVG_NS}}}rect",
            {"x": f"{x:g}", "y": f"{y:g}", "width": f"{w:g}", "height": f"{h:g}", "fill": "#ffffff"},
        )
    elif plan.photo is not None:
        image = copy.deepcopy(plan.photo.element)
        image.attrib.pop("transform", None)
        if plan.photo.path is not None:  # linked: link it from where the animation is written
            image.set(f"{{{XLINK_NS}}}href", Path(os.path.relpath(plan.photo.path, out.resolve().parent)).as_posix())
        _transformed(root, plan.photo.to_document).append(image)
