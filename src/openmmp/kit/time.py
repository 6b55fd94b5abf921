"""The one clock. Everything on the wire is epoch milliseconds."""

import time


def now_ms() -> int:
    return int(time.time() * 1000)
