"""Wall-clock milliseconds: the only time the exchange ever shows a client."""

from __future__ import annotations

import time


def now_ms() -> int:
    return int(time.time() * 1000)
