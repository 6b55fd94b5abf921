"""The dashboard's chart: each channel's messages over time by status, drawn as stacked bars in SVG.

Drawn on the server (no chart library, nothing from a CDN); each chart comes with its numbers as a table,
for screen readers and for copying. Counts are of the messages created in each bucket, by their status
now (the same tallies as Get Channel Summary).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from openmmp.messages.tallies import HOUR_MS
from openmmp.models.message import MessageStatus

# Bottom to top; the colours keep 3:1 against white (WCAG's contrast for graphics).
SERIES = (
    (MessageStatus.READ, "read", "#136c2e"),
    (MessageStatus.DELIVERED, "delivered", "#2f8f4e"),
    (MessageStatus.SENT, "sent", "#0b5394"),
    (MessageStatus.PENDING, "pending", "#6b7785"),
    (MessageStatus.FAIL, "failed", "#b3261e"),
)


@dataclass(frozen=True)
class Range:
    key: str
    label: str
    buckets: int
    bucket_hours: int


RANGES = {
    r.key: r
    for r in (
        Range("24h", "Last 24 hours", 24, 1),
        Range("7d", "Last 7 days", 28, 6),
        Range("30d", "Last 30 days", 30, 24),
    )
}
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 640, 220, 44, 24, 8


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    label: str
    counts: dict[str, int]
    pieces: list[tuple[float, float, str, str]]  # (y, height, colour, series)


@dataclass(frozen=True)
class Chart:
    name: str
    account_id: str
    bars: list[Bar]
    top: int
    totals: dict[str, int]
    ticks: list[tuple[float, int]]  # (y, value) of the axis's labels


def window(chosen: Range, now_ms: int) -> tuple[int, int]:
    """[first hour, end) of the range, ending with the hour now is in."""
    end = (now_ms // HOUR_MS + 1) * HOUR_MS
    return end - chosen.buckets * chosen.bucket_hours * HOUR_MS, end


def _label(epoch_ms: int, bucket_hours: int) -> str:
    moment = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return moment.strftime("%d %b") if bucket_hours >= 24 else moment.strftime("%d %b %H:00")


def chart(name: str, account_id: str, counts: dict[tuple[int, int], int], chosen: Range, first: int) -> Chart:
    """One channel's chart from its counts by (hour, status)."""
    bucket_ms = chosen.bucket_hours * HOUR_MS
    per_bucket = [dict.fromkeys([s for _, s, _ in SERIES], 0) for _ in range(chosen.buckets)]
    for (hour, status), messages in counts.items():
        index = (hour - first) // bucket_ms
        if 0 <= index < chosen.buckets:
            for series_status, series, _ in SERIES:
                if status == series_status:
                    per_bucket[index][series] += messages
    # The axis ends at four whole steps at or above the tallest bar: its labels are distinct whole numbers.
    unit = max(1, math.ceil(max(sum(b.values()) for b in per_bucket) / 4))
    top = 4 * unit
    plot_w, plot_h = WIDTH - LEFT, HEIGHT - BOTTOM - TOP
    step = plot_w / chosen.buckets
    bars = []
    for index, bucket in enumerate(per_bucket):
        y: float = TOP + plot_h
        pieces: list[tuple[float, float, str, str]] = []
        for _, series, colour in SERIES:
            height = plot_h * bucket[series] / top
            if height > 0:
                y -= height
                pieces.append((round(y, 2), round(height, 2), colour, series))
        bars.append(
            Bar(
                x=round(LEFT + index * step + step * 0.1, 2),
                width=round(step * 0.8, 2),
                label=_label(first + index * bucket_ms, chosen.bucket_hours),
                counts=bucket,
                pieces=pieces,
            )
        )
    totals = {series: sum(b[series] for b in per_bucket) for _, series, _ in SERIES}
    ticks = [(round(TOP + plot_h - plot_h * part / 4, 2), unit * part) for part in range(5)]
    return Chart(name=name, account_id=account_id, bars=bars, top=top, totals=totals, ticks=ticks)
