"""Words shared by every message the engine, the CLI and the extension show."""

from __future__ import annotations


def count(number: int, thing: str, things: str = "") -> str:
    """'1 photo', '2 photos' ('1 sketch', '2 sketches' with `things`)."""
    return f"{number} {thing}" if number == 1 else f"{number} {things or thing + 's'}"
