"""A channel's egress limit: what dispatch holds its sends to, and what a campaign paces itself by."""

from __future__ import annotations

from openmmp.kit.limits import Limit
from openmmp.models import Channel
from openmmp.providers.base import Provider
from openmmp.settings import Settings


def channel_limit(channel: Channel, provider: Provider, settings: Settings) -> Limit:
    """The channel's egress limit: its own `rateLimitPerSecond`, else its provider's (configured) limit.

    For a limit of N requests per W seconds we send at `safety × N / W` with a burst of `(1 − safety) × N`,
    so no window of W seconds ever holds more than N requests, whether the upstream counts with a sliding
    window or a token bucket.
    """
    limits = settings.limits
    configured = channel.settings.get("rateLimitPerSecond")
    if configured:
        count, window = float(configured), 1.0
    else:
        count, window = limits.of(provider)
    return Limit(rate=limits.safety * count / window, burst=max(1.0, (1 - limits.safety) * count))
