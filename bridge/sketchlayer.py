"""A sketch layer of an SVG document as Refine Sketch reads it, and the refined strokes written back in place.

The `refine` command (lxml, on the engine's SVGs) and the Inkscape effect (inkex, on any document)
both go through here, so a layer means the same strokes to both. Elements are lxml elements (inkex's
are too). The caller gives each path's affine map from its own user units to the photo's pixels:
for the effect, the inverse of the placement map composed with the path's transforms; the points
are mapped exactly (an affine map of control points is the map of the curve).

Reading: every `<path>` of the layer (through plain groups, not into sublayers) is split into its
Bézier segments (bridge.svgpath), one stroke each; a path is locked when it or a group around it
up to the layer carries Inkscape's lock (sodipodi:insensitive). Writing back: locked paths are not
touched; each unlocked path takes its first refined stroke (same element, id, style), further
strokes of a split path become copies of it right after it, a path whose strokes were all dropped
is removed, and added strokes are copies of the first unlocked path placed after the last one.

Ink (Inkscape's PowerStroke, bridge.inkpath): an ink path's stroke is its centre line,
`inkscape:original-d` (its `d` is the outline), its width the mean of its knots'. An ink result
(the refine asked for ink) writes each path as ink: the centre line, a PowerStroke effect with the
refined widths, and the outline as `d`, all mapped into the path's user units; a pen result writes
pen paths, so an ink path refined as pen becomes a pen path of the engine's width.

Standard library only (the light package).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bridge import inkpath
from bridge.errors import InputError
from bridge.svgpath import IMPORTANCE, SOURCE, PathDataError, Point, Segment, segments
from bridge.svgtransform import Matrix, apply, invert

SVG_NS = "http://www.w3.org/2000/svg"
INKSCAPE_NS = "http://www.inkscape.org/namespaces/inkscape"
SODIPODI_NS = "http://sodipodi.sourceforge.net/DTD/sodipodi-0.dtd"
PATH, GROUP = f"{{{SVG_NS}}}path", f"{{{SVG_NS}}}g"
ORIGINAL_D = f"{{{INKSCAPE_NS}}}original-d"  # an ink (PowerStroke) path's centre line
LABEL, GROUPMODE = f"{{{INKSCAPE_NS}}}label", f"{{{INKSCAPE_NS}}}groupmode"
INSENSITIVE, NODETYPES = f"{{{SODIPODI_NS}}}insensitive", f"{{{SODIPODI_NS}}}nodetypes"
SVG_DEFAULT_WIDTH = 1.0  # user units: SVG's initial stroke-width


def width_scale(m: Matrix) -> float:
    """How a stroke width scales under `m`: the square root of its determinant (exact for any rotation
    and uniform scale, as the placement scales widths)."""
    return math.sqrt(abs(m[0] * m[3] - m[1] * m[2]))


def is_layer(element: Any) -> bool:
    return bool(element.tag == GROUP and element.get(GROUPMODE) == "layer")


def layer_of(element: Any) -> Any:
    """The layer holding `element` (its nearest ancestor that is a layer), or None."""
    parent = element.getparent()
    while parent is not None and not is_layer(parent):
        parent = parent.getparent()
    return parent


def layer_paths(layer: Any) -> list[Any]:
    """The layer's `<path>`s in document order, looking through plain groups, not into sublayers."""
    out = []
    for child in layer:
        if child.tag == PATH:
            out.append(child)
        elif child.tag == GROUP and not is_layer(child):
            out += layer_paths(child)
    return out


def is_locked(path: Any, layer: Any) -> bool:
    """Whether Inkscape's lock is on the path or a group around it, up to and including `layer`."""
    element = path
    while element is not None:
        if element.get(INSENSITIVE) in ("true", "1"):
            return True
        if element is layer:
            return False
        element = element.getparent()
    return False


@dataclass
class LayerStrokes:
    """A layer's strokes in the photo's pixels, as a refine request takes them."""

    paths: list[Any]  # the path elements, in document order
    to_photo: list[Matrix]  # per path: its user units -> photo px
    strokes: list[Segment]  # photo px, 2, 3 or 4 control points each
    owners: list[int]  # per stroke: its path's index in `paths`
    locked: list[bool]  # per stroke (its path's lock)
    widths: list[float]  # per stroke: the stroke width in photo px


def read_layer(layer: Any, paths: Sequence[Any], to_photo: Callable[[Any], Matrix]) -> LayerStrokes:
    """The strokes of `paths` (elements of `layer`); InputError for a path that is not Bézier segments."""
    out = LayerStrokes(list(paths), [], [], [], [], [])
    for index, path in enumerate(paths):
        matrix = to_photo(path)
        out.to_photo.append(matrix)
        try:
            pieces = segments(path.get(ORIGINAL_D) or path.get("d") or "")  # ink: d is the outline
        except PathDataError as err:
            raise InputError(
                f"path '{path.get('id', '?')}' in the sketch layer cannot be refined: {err}",
                "move it to another layer, or redraw it with the pen or pencil tool",
            ) from None
        locked, width = is_locked(path, layer), _path_width(path) * width_scale(matrix)
        for piece in pieces:
            out.strokes.append(tuple(apply(matrix, point) for point in piece))
            out.owners.append(index)
            out.locked.append(locked)
            out.widths.append(width)
    return out


@dataclass(frozen=True)
class Refined:
    """One stroke of the engine's refine result."""

    source: int  # the index of the given stroke it refines; -1 for an added stroke
    points: Segment  # photo px
    importance: float | None  # None: not ranked (over the engine's ranking limit)
    width: float = SVG_DEFAULT_WIDTH  # a pen stroke's width, photo px
    ink: tuple[float, ...] | None = None  # an ink stroke's knot half-widths, photo px (None: pen)
    outline: tuple[Point, ...] = ()  # an ink stroke's outline polygon, photo px
    effect: tuple[tuple[str, str], ...] = ()  # an ink stroke's PowerStroke parameters, as the engine wrote them


def read_result(svg: bytes) -> tuple[list[Refined], float]:
    """The strokes of the engine's refine SVG (engine.jobs.run_refine), and the width (photo px) it
    gives added strokes."""
    root = ElementTree.fromstring(svg)
    effects = {e.get("id"): e for e in root.iter(inkpath.PATH_EFFECT)}
    strokes, width = [], SVG_DEFAULT_WIDTH
    for path in root.iter(PATH):
        (points,) = segments(path.get(ORIGINAL_D) or path.get("d") or "")
        score = path.get(IMPORTANCE)
        stroke = Refined(int(path.get(SOURCE, "-1")), points, None if score is None else float(score))
        effect = effects.get((path.get(inkpath.PATH_EFFECT) or "").removeprefix("#"))
        if path.get(ORIGINAL_D) and effect is not None:
            outline = tuple(piece[0] for piece in segments(path.get("d") or ""))
            ink = tuple(inkpath.half_widths(effect))
            stroke = dataclasses.replace(stroke, ink=ink, outline=outline, effect=tuple(effect.attrib.items()))
        else:
            width = stroke_width(path)
            stroke = dataclasses.replace(stroke, width=width)
        strokes.append(stroke)
    return strokes, width


def write_back(
    layer: LayerStrokes, result: Sequence[Refined], added_width: float, new_id: Callable[[], str]
) -> list[Any]:
    """Put the refined strokes into the document (see the module docstring); returns the written paths,
    most important first. `new_id()` gives a fresh element id; `added_width` is in photo px."""
    by_path: dict[int, list[Refined]] = {}
    for stroke in sorted((s for s in result if s.source >= 0), key=lambda s: s.source):
        if not layer.locked[stroke.source]:
            by_path.setdefault(layer.owners[stroke.source], []).append(stroke)
    unlocked = sorted({layer.owners[i] for i, locked in enumerate(layer.locked) if not locked})
    written: list[tuple[float, Any]] = []  # (importance, path); unranked strokes keep their order
    for index in unlocked:
        path, matrix = layer.paths[index], layer.to_photo[index]
        strokes = by_path.get(index, [])
        if not strokes:
            effect = inkpath.effect_of(path)
            path.getparent().remove(path)
            inkpath.drop_if_unused(effect)
            continue
        _set_stroke(path, strokes[0], matrix, new_id)
        written.append((_score(strokes[0]), path))
        previous = path
        for stroke in strokes[1:]:
            piece = _copy(path, new_id())
            _set_stroke(piece, stroke, matrix, new_id)
            previous.addnext(piece)
            written.append((_score(stroke), piece))
            previous = piece
    added = [s for s in result if s.source < 0]
    if added:
        template = layer.paths[unlocked[0]] if unlocked else layer.paths[-1]
        matrix = layer.to_photo[unlocked[0] if unlocked else -1]
        after = written[-1][1] if written else layer.paths[-1]
        for stroke in added:
            path = _copy(template, new_id())
            _set_style(path, "stroke-width", f"{added_width / width_scale(matrix):.6g}")
            path.attrib.pop(INSENSITIVE, None)
            _set_stroke(path, stroke, matrix, new_id)
            after.addnext(path)
            written.append((_score(stroke), path))
            after = path
    return [path for _, path in sorted(written, key=lambda item: -item[0])]


def _score(stroke: Refined) -> float:
    return 0.0 if stroke.importance is None else stroke.importance


def _copy(path: Any, element_id: str) -> Any:
    piece = copy.deepcopy(path)
    piece.tail = path.tail
    piece.set("id", element_id)
    return piece


def _set_stroke(path: Any, stroke: Refined, to_photo: Matrix, new_id: Callable[[], str]) -> None:
    """Write `stroke` as the path's data in its own user units (pen or ink, as the stroke is), with
    its importance."""
    back = invert(to_photo)
    start, *rest = (apply(back, point) for point in stroke.points)
    command = {2: "L", 3: "Q", 4: "C"}[len(stroke.points)]
    centre_line = f"M {_fmt(start)} {command} {' '.join(map(_fmt, rest))}"
    scale = width_scale(to_photo)
    if stroke.ink is None:
        inkpath.set_pen(path, centre_line, f"{stroke.width / scale:.6g}")
    else:
        head, *tail = (_fmt(apply(back, point)) for point in stroke.outline)
        outline = f"M {head} L {' '.join(tail)} Z"
        style = _style(path)
        color = style.get("fill", "#000000") if path.get(ORIGINAL_D) else style.get("stroke", "#000000")
        widths = [w / scale for w in stroke.ink]
        inkpath.set_ink(path, centre_line, outline, dict(stroke.effect), widths, color, new_id)
    if stroke.importance is not None:
        path.set(IMPORTANCE, f"{stroke.importance:.6g}")
    path.attrib.pop(NODETYPES, None)  # Inkscape's node types of the old data; it derives new ones


def _fmt(point: Point) -> str:
    return " ".join(f"{v:.6f}".rstrip("0").rstrip(".") for v in point)


def _style(element: Any) -> dict[str, str]:
    """Presentation attributes overridden by the `style` attribute, as in CSS."""
    style = {str(k): str(v) for k, v in element.attrib.items()}
    for declaration in (element.get("style") or "").split(";"):
        name, colon, value = declaration.partition(":")
        if colon:
            style[name.strip()] = value.strip()
    return style


def _path_width(path: Any) -> float:
    """A path's stroke width in its user units: an ink path's mean knot width, else its stroke-width."""
    effect = inkpath.effect_of(path)
    if effect is not None:
        try:
            knots = inkpath.half_widths(effect)
        except ValueError:
            knots = []
        if knots and all(math.isfinite(w) and w > 0 for w in knots):
            return 2 * sum(knots) / len(knots)
    return stroke_width(path)


def stroke_width(path: Any) -> float:
    """The path's stroke-width in its user units (a number, optionally "px"); SVG's default otherwise."""
    try:
        width = float(_style(path).get("stroke-width", "").strip().removesuffix("px"))
    except ValueError:
        return SVG_DEFAULT_WIDTH
    return width if math.isfinite(width) and width > 0 else SVG_DEFAULT_WIDTH


def _set_style(element: Any, name: str, value: str) -> None:
    declarations = [d for d in (element.get("style") or "").split(";") if d.strip()]
    kept = [d for d in declarations if d.partition(":")[0].strip() != name]
    element.set("style", ";".join([*kept, f"{name}:{value}"]))
