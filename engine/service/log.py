"""The engine's log lines: timestamped, on stderr (the engine's log file when a client started it)."""

from __future__ import annotations

import sys
import time


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)
