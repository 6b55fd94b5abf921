"""The one clock. Everything on the wire is epoch milliseconds."""

import time


def now_ms() -> int:
    return int(time.time() * 1000)


MAX_EPOCH_MS = 253_402_300_799_999
"""The last millisecond of the year 9999: no date a client gives is later."""
