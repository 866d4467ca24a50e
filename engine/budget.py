"""Memory: giving freed memory back to the system.

glibc keeps freed blocks in its heap for reuse, so an engine that once held a large message or a
large job would keep that much resident for the rest of its life. `malloc_trim` returns it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_LIBC = ctypes.CDLL(ctypes.util.find_library("c")) if sys.platform.startswith("linux") else None


def release_to_system() -> None:
    """Return the heap's free memory to the system (glibc; elsewhere the allocator does it itself)."""
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is not None:
        trim(0)
