"""Debian's Chromium driven by Playwright (never a downloaded browser); tests skip loudly without it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, async_playwright

CHROMIUM = Path("/usr/bin/chromium")
# Headless, and none of Chromium's own calls home: this machine's network is closed.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require_chromium(what: str) -> None:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium): {what}")


@asynccontextmanager
async def chromium(profile: Path, **options: object) -> AsyncIterator[BrowserContext]:
    """A fresh browser profile (nothing cached, no cookies) in Debian's Chromium."""
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, **options
        )
        try:
            yield context
        finally:
            await context.close()
