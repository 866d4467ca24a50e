"""Which strokes an animation draws, in which order, and when: read from a sketch SVG.

A sketch layer is chosen by its label or id (`layer`), or by default every visible layer of the
document. Inside the chosen layer, hidden sublayers are skipped (a scene column shows its visible
cell). Order "importance": strokes under a layer labelled "Object" first (a scene's subject), then
the rest; each group most important first by sketchabs:importance (unranked strokes after, in
document order). Order "layers": the chosen layer's sublayers one after another, in document order
(a scene's columns, column by column), each by importance. Pace "length": one pen speed, so a
stroke's time is proportional to its length; "even": every stroke the same time.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
from lxml import etree

from bridge.errors import InputError
from bridge.svgpath import IMPORTANCE
from bridge.svgtransform import Matrix, to_document
from engine.svg import INKSCAPE_NS, SODIPODI_NS, SOURCE_IMAGE_LABEL, SVG_NS, XLINK_NS, PathStroke, read_path_stroke

ORDERS = ("importance", "layers")
PACES = ("length", "even")
BACKGROUNDS = ("none", "white", "photo")
OBJECT_LABEL = "Object"  # a scene cell's subject layer (engine.scene.combine)
_G, _PATH, _IMAGE = (f"{{{SVG_NS}}}{tag}" for tag in ("g", "path", "image"))
_LABEL, _GROUPMODE = f"{{{INKSCAPE_NS}}}label", f"{{{INKSCAPE_NS}}}groupmode"


@dataclass(frozen=True)
class AnimateParams:
    duration: float = 6.0  # seconds from the first stroke to the last one drawn
    pace: str = "length"
    order: str = "importance"
    background: str = "none"
    fps: int = 12  # GIF and MP4 frames per second (GIFs at least one frame per stroke)
    hold: float = 1.5  # seconds the finished sketch stays in GIF and MP4
    size: int = 640  # longest side of GIF and MP4 frames, px (at most the document's own)

    def validate(self) -> AnimateParams:
        checks = [
            (0.1 <= self.duration <= 3600, f"--duration must be 0.1 to 3600 seconds, got {self.duration}"),
            (self.pace in PACES, f"--pace must be one of {', '.join(PACES)}"),
            (self.order in ORDERS, f"--order must be one of {', '.join(ORDERS)}"),
            (self.background in BACKGROUNDS, f"--background must be one of {', '.join(BACKGROUNDS)}"),
            (1 <= self.fps <= 60, f"--fps must be 1 to 60, got {self.fps}"),
            (0 <= self.hold <= 60, f"--hold must be 0 to 60 seconds, got {self.hold}"),
            (16 <= self.size <= 4096, f"--size must be 16 to 4096 px, got {self.size}"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message, "see sketch-abstraction animate --help")
        return self


@dataclass
class Stroke:
    element: etree._Element  # the path in the source document
    to_document: Matrix  # its user units -> the document's
    drawn: PathStroke  # in document units
    importance: float  # nan: not ranked
    start: float = 0.0  # s
    seconds: float = 0.0


@dataclass
class Photo:
    element: etree._Element  # the <image>
    to_document: Matrix
    data: bytes  # the encoded picture
    path: Path | None  # its file, None when embedded


@dataclass
class Plan:
    root: etree._Element
    view_box: tuple[float, float, float, float]  # x, y, w, h of the document
    strokes: list[Stroke]  # in drawing order, each with its start and time
    photo: Photo | None
    params: AnimateParams
    notes: list[str] = field(default_factory=list)


def plan(data: bytes, source: Path, layer: str | None, params: AnimateParams) -> Plan:
    """The animation of `data` (the SVG at `source`, for relative photo links)."""
    params.validate()
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as err:
        raise InputError(f"{source} is not an SVG file: {err}", "give a sketch SVG") from None
    chosen = _find_layer(root, layer) if layer else root
    strokes = [entry[3] for entry in sorted(_collect(root, chosen), key=lambda entry: _key(entry, params.order))]
    if not strokes:
        where = f"layer {layer!r}" if layer else "any visible layer"
        raise InputError(f"no strokes to animate in {where} of {source}", "pass --layer with a sketch layer's name")
    lengths = np.array([_length(s) for s in strokes])
    share = lengths / lengths.sum() if params.pace == "length" and lengths.sum() > 0 else np.full(len(strokes), 1.0)
    share = share / share.sum()
    t = 0.0
    for stroke, part in zip(strokes, share, strict=True):
        stroke.start, stroke.seconds = t, float(part * params.duration)
        t += stroke.seconds
    photo = _photo(root, source) if params.background == "photo" else None
    return Plan(root, _view_box(root), strokes, photo, params)


def _key(entry: tuple[int, bool, int, Stroke], order: str) -> tuple:
    group, is_object, position, stroke = entry
    rank = -stroke.importance if math.isfinite(stroke.importance) else math.inf
    return (group if order == "layers" else 0, not is_object, rank, position)


def _collect(root: etree._Element, chosen: etree._Element) -> list[tuple[int, bool, int, Stroke]]:
    """(group, under an Object layer, document position, stroke) of every stroke path in `chosen`;
    each child of `chosen` is a group (order "layers"). Hidden layers and the source image are skipped
    (the chosen layer itself is drawn even when hidden: it was asked for)."""
    out: list[tuple[int, bool, int, Stroke]] = []

    def visit(node: etree._Element, group: int, is_object: bool) -> None:
        if node.tag == _PATH:
            score = node.get(IMPORTANCE)
            stroke = Stroke(node, to_document(node), read_path_stroke(node, root), _number(score))
            out.append((group, is_object, len(out), stroke))
        elif node.tag == _G and not _hidden(node) and node.get(_LABEL) != SOURCE_IMAGE_LABEL:
            for child in node:
                visit(child, group, is_object or node.get(_LABEL) == OBJECT_LABEL)

    chosen_is_object = chosen.get(_LABEL) == OBJECT_LABEL
    for group, child in enumerate(chosen):
        visit(child, group, chosen_is_object)
    return out


def _number(text: str | None) -> float:
    try:
        return float(text) if text is not None else math.nan
    except ValueError:
        return math.nan


def _hidden(element: etree._Element) -> bool:
    return "display:none" in element.get("style", "").replace(" ", "") or element.get("display") == "none"


def _find_layer(root: etree._Element, name: str) -> etree._Element:
    """The layer (or group) whose label or id is `name`; InputError listing the layers otherwise."""
    groups = list(root.iter(_G))
    for group in groups:
        if name in (group.get(_LABEL), group.get("id")):
            return group
    labels = [g.get(_LABEL) for g in groups if g.get(_GROUPMODE) == "layer" and g.get(_LABEL)]
    raise InputError(
        f"no layer named {name!r} in the SVG",
        f"pass --layer with one of: {', '.join(repr(label) for label in labels[:12]) or '(no layers)'}",
    )


def _view_box(root: etree._Element) -> tuple[float, float, float, float]:
    text = root.get("viewBox")
    try:
        if text:
            x, y, w, h = (float(v) for v in text.replace(",", " ").split())
        else:
            x, y = 0.0, 0.0
            w, h = (float((root.get(a) or "").strip().removesuffix("px")) for a in ("width", "height"))
    except ValueError:
        w = h = 0.0
    if not (w > 0 and h > 0):
        raise InputError("the SVG has no usable size (viewBox or width and height)", 'give it viewBox="0 0 W H"')
    return x, y, w, h


def _length(stroke: Stroke) -> float:
    """The centre line's length in document units (a 32-piece polyline)."""
    points = stroke.drawn.points
    t = np.linspace(0.0, 1.0, 33)[:, None]
    k = len(points)
    basis = np.hstack([math.comb(k - 1, i) * t**i * (1 - t) ** (k - 1 - i) for i in range(k)])
    a, b, c, d, e, f = stroke.to_document
    curve = basis @ points @ np.array([[a, b], [c, d]]) + [e, f]
    return float(np.linalg.norm(np.diff(curve, axis=0), axis=1).sum())


def _photo(root: etree._Element, source: Path) -> Photo:
    """The document's photo: its source image layer's, else its first <image>; InputError without one."""
    for image in root.iter(_IMAGE):
        href = image.get(f"{{{XLINK_NS}}}href") or image.get("href") or ""
        found = _image_file(href, image, source)
        if found is not None:
            return Photo(image, to_document(image), *found)
    raise InputError(
        f"--background photo: {source} holds no photo that can be read",
        "animate the Inkscape document that holds the photo, or use --background white",
    )


def _image_file(href: str, image: etree._Element, source: Path) -> tuple[bytes, Path | None] | None:
    """An <image>'s picture and file: embedded (data: URI), a file relative to the SVG, or its absolute
    path (sodipodi:absref, as Inkscape records it)."""
    if href.startswith("data:"):
        try:
            return base64.b64decode(href.partition(",")[2]), None
        except ValueError:
            return None
    path = unquote(urlparse(href).path) if href.startswith("file:") else href
    for candidate in (source.parent / path, Path(image.get(f"{{{SODIPODI_NS}}}absref") or "")):
        if path and candidate.is_file():
            return candidate.read_bytes(), candidate.resolve()
    return None
