"""The in-process limiter forgets only keys whose time has passed, so that keys by the million (one per
end user) do not grow without end, and what it forgets changes no answer."""

from __future__ import annotations

from openmmp.kit.limits import Limit, LocalLimiter


async def test_idle_keys_are_forgotten_and_busy_ones_kept():
    limiter = LocalLimiter(max_keys=3)
    slow = Limit(rate=0.001, burst=1)  # one request per 1,000 s: its key stays busy
    fast = Limit(rate=1e9, burst=1)  # its key is idle again at once
    assert await limiter.reserve("busy", slow) == 0.0
    for n in range(5):
        assert await limiter.reserve(f"idle-{n}", fast) == 0.0
    assert len(limiter._tat) <= 3
    assert "busy" in limiter._tat
    assert await limiter.reserve("busy", slow) > 900  # still waits: not forgotten
