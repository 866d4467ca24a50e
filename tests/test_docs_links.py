"""The README and the pages under docs/ link to each other: every relative link and picture they
hold leads to a file of the repository and, with an anchor, to a heading of that page, so that a
reader who follows one from the README (the front door) lands where it says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")  # [text](target) and ![alt](target)
CODE_SPAN = re.compile(r"`[^`]*`")


def _prose(text: str) -> list[str]:
    """The lines outside fenced code blocks, with inline code removed (links there are not links)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append(CODE_SPAN.sub("", line))
    return lines


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    for line in _prose(page.read_text(encoding="utf-8")):
        if line.startswith("#"):
            base = slug(line.lstrip("#"))
            name, n = base, 0
            while name in found:  # a repeated heading gets -1, -2, ... as on GitHub
                n += 1
                name = f"{base}-{n}"
            found.add(name)
    return found


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    broken = []
    for line in _prose(page.read_text(encoding="utf-8")):
        for target in LINK.findall(line):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:: not this repository's
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(root)}: ({target})"
            if not file.is_relative_to(root) or not file.exists():
                broken.append(f"{where}: no such file")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file):
                broken.append(f"{where}: no heading #{anchor} in {file.relative_to(root)}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_of_the_documentation_leads_somewhere(page):
    broken = broken_links(page)
    assert not broken, "\n".join(broken)


def test_the_readme_links_every_page_of_docs():
    """A page the README does not link is a page nobody finds."""
    readme = "\n".join(_prose((ROOT / "README.md").read_text(encoding="utf-8")))
    unlinked = [p.name for p in PAGES[1:] if f"(docs/{p.name}" not in readme]
    assert not unlinked, f"docs pages the README does not link: {unlinked}"


def test_the_check_catches_a_moved_section(tmp_path):
    """The check is not blind: a link to a heading that moved away, or to a picture whose path was
    not fixed after a page moved, is reported (the two mistakes a move of README sections makes)."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "x.png").write_bytes(b"")
    page = tmp_path / "docs" / "page.md"
    page.write_text("# Scenes (CLIPascene)\n\n## How it differs\n\n[a](#how-it-differs) ![b](x.png)\n")
    assert slug("Scenes (CLIPascene)") == "scenes-clipascene" and "how-it-differs" in anchors(page)
    moved = "[a](#reliability) ![b](docs/x.png) `[not a link](nowhere.md)`\n```\n[nor this](nowhere.md)\n```\n"
    page.write_text(page.read_text() + moved)
    broken = broken_links(page, root=tmp_path)
    assert len(broken) == 2 and "#reliability" in broken[0] and "docs/x.png" in broken[1], broken
