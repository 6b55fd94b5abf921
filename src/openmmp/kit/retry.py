"""Back-off as data: when to try again, computed from the attempt count (never slept in a handler)."""

from __future__ import annotations

import random


def backoff_ms(attempt: int, *, base_s: float, max_s: float) -> int:
    """Exponential back-off with ±20 % jitter: base, 2×base, 4×base, … capped at `max_s`."""
    delay = min(max_s, base_s * (2 ** max(0, attempt - 1)))
    return int(delay * random.uniform(0.8, 1.2) * 1000)
