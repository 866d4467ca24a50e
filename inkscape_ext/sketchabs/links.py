"""Linked photos keep the link the designer wrote, whichever Inkscape runs the effect.

Inkscape hands an effect a temporary copy of the document whose relative `<image>` links are
rebased to the temporary copy's folder (`camel.png` beside the document arrives as, say,
`art/camel.png` when the copy lives in the folder above). Inkscape 1.2 rebases them back when it
reads the effect's output. Inkscape 1.3 and 1.4 replace the document with the output as it is: the
link then points next to the document at a path that does not exist, Inkscape says "Broken links
have been changed to point to existing files" (a dialog that waits for a click) and saves the wrong
link. So, run by 1.3 or later, the effect writes each relative link back relative to the document,
as the designer wrote it; run by 1.2 it leaves them as Inkscape handed them over. Which Inkscape
runs the effect: the version of the inkex it imports, which Inkscape puts first on the path from its
own installation (the temporary copy's `inkscape:version` is that of whoever saved the file last,
and absent in a file Inkscape never saved).
"""

from __future__ import annotations

import os
import re
import urllib.parse

import inkex

REBASES_BACK_BEFORE = (1, 3)  # Inkscape versions below this rebase links back themselves
_VERSION = re.compile(r"(\d+)\.(\d+)")


def inkscape_version() -> tuple[int, int] | None:
    """(major, minor) of the Inkscape running the effect: that of its inkex."""
    found = _VERSION.match(getattr(inkex, "__version__", ""))
    return (int(found[1]), int(found[2])) if found else None


def restore(svg, input_file: str, document_path: str) -> int:
    """Write every relative image link of `svg` (read from `input_file`, Inkscape's temporary copy)
    back relative to the document `document_path`, where the running Inkscape does not do it itself;
    returns how many links were rewritten."""
    version = inkscape_version()
    if version is None or version < REBASES_BACK_BEFORE or not document_path or not input_file:
        return 0
    handed, document = os.path.dirname(os.path.abspath(input_file)), os.path.dirname(os.path.abspath(document_path))
    if handed == document:
        return 0
    rewritten = 0
    for image in svg.xpath("//svg:image"):
        key = "xlink:href" if image.get("xlink:href") is not None else "href"
        href = image.get(key) or ""
        if not href or href.startswith(("data:", "file:", "/", "#")) or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", href):
            continue  # embedded, absolute or a URL: Inkscape leaves those alone
        target = os.path.normpath(os.path.join(handed, urllib.parse.unquote(href)))
        written = os.path.relpath(target, document).replace(os.sep, "/")
        if written != href:
            image.set(key, urllib.parse.quote(written) if "%" in href else written)
            rewritten += 1
    return rewritten
