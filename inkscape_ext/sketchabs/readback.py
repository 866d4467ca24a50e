"""Refine Sketch's view of the document: which layer and photo, and each path's map to the photo's pixels.

The map is exactly the inverse of the placement (sketchabs.placement.pixel_to_document, the image's
box, preserveAspectRatio and every transform above it) composed with the path's own transforms, so
a sketch inserted by the effects reads back to the engine's pixels. bridge.sketchlayer does the
reading and the writing back with these maps.
"""

from __future__ import annotations

import inkex

from bridge.sketchlayer import is_layer, layer_of
from bridge.svgtransform import Matrix
from sketchabs import messages
from sketchabs.images import Photo, SelectionError
from sketchabs.placement import as_matrix, pixel_to_document


def to_photo(photo: Photo):
    """A function: path element -> the affine map from its user units to the photo's pixels."""
    from_document = -pixel_to_document(photo.element, photo.size)

    def matrix(path) -> Matrix:
        return as_matrix(from_document @ path.composed_transform())

    return matrix


def target_photo(svg) -> inkex.Image:
    """The selected image, or the document's only image when none is selected."""
    selected = [el for el in svg.selection.values() if isinstance(el, inkex.Image)]
    images = selected or list(svg.descendants().filter(inkex.Image))
    if len(images) != 1:
        raise SelectionError(messages.refine_photo(len(selected)))
    return images[0]


def target_layer(svg):
    """The layer of the selected paths (they must share one), else the current layer."""
    paths = [el for el in svg.selection.values() if isinstance(el, inkex.PathElement)]
    layers = {id(layer): layer for layer in map(layer_of, paths) if layer is not None}
    if len(layers) > 1:
        raise SelectionError(messages.REFINE_LAYERS_DIFFER)
    layer = next(iter(layers.values())) if layers else svg.get_current_layer()
    if layer is None or not is_layer(layer):
        raise SelectionError(messages.REFINE_NO_LAYER)
    return layer
