"""Wall-clock time in Unix milliseconds (injectable so tests can move time)."""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], int]


def system_clock() -> int:
    """Milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000
