"""/docs works with no network: headless Chromium (Debian's) renders it from this server alone.

The app is served by a real uvicorn server on 127.0.0.1; the browser's every request to another origin is
aborted and recorded, so a page that needs a CDN, a web font or a remote favicon fails here as it would on
a machine without internet access.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import Page, Request, Route
from playwright.async_api import TimeoutError as PlaywrightTimeout
from tests.browser import chromium, require_chromium
from tests.conftest import TEST_SECRET, asgi_client, running_app
from tests.providers.viber_harness import serve

from openmmp.app import create_app
from openmmp.settings import Settings


def _settings(tmp_path: Path) -> Settings:
    # The docs touch no table: an empty SQLite file is enough, and one database kind (not the `settings`
    # fixture's two) keeps this to one browser start.
    return Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'docs.db'}",
        data_dir=tmp_path,
        secret_key=TEST_SECRET,
        sandbox=False,
    )


@pytest.fixture
async def base_url(tmp_path: Path) -> AsyncIterator[str]:
    """The real app behind a real uvicorn server on 127.0.0.1 (uvicorn runs its lifespan)."""
    async with serve(create_app(_settings(tmp_path))) as url:
        yield url


@dataclass
class Rendered:
    """What the browser did with /docs."""

    outside: list[str] = field(default_factory=list)  # requests to any other origin (all aborted)
    failed: list[str] = field(default_factory=list)  # same-origin requests that failed
    errors: list[str] = field(default_factory=list)  # uncaught JavaScript errors
    operations: int = 0  # Swagger UI's operation blocks
    text: str = ""


async def render_docs(base_url: str, profile: Path) -> Rendered:
    """Open /docs in headless Chromium with every other origin blocked; wait for the operations."""
    require_chromium("/docs cannot be rendered offline")
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(base_url))
    seen = Rendered()

    def same_origin(url: str) -> bool:
        return url == origin or url.startswith(origin + "/")

    async def only_this_server(route: Route) -> None:
        if same_origin(route.request.url):
            await route.continue_()
        else:
            await route.abort("internetdisconnected")

    def on_request(request: Request) -> None:
        # Every request the browser makes, including any the route handler would not see.
        url = request.url
        if not same_origin(url) and not url.startswith(("data:", "blob:")) and url not in seen.outside:
            seen.outside.append(url)

    def on_failed(request: Request) -> None:
        if same_origin(request.url):
            seen.failed.append(f"{request.url}: {request.failure}")

    async with chromium(profile) as context:
        await context.route("**/*", only_this_server)
        context.on("request", on_request)
        context.on("requestfailed", on_failed)
        page: Page = context.pages[0] if context.pages else await context.new_page()
        page.on("pageerror", lambda error: seen.errors.append(str(error)))
        response = await page.goto(f"{base_url}/docs", wait_until="load")
        assert response is not None and response.status == 200
        # On a timeout, what did render is reported by the test's assertions.
        with contextlib.suppress(PlaywrightTimeout):
            await page.wait_for_selector(".opblock", timeout=15_000)
        await page.wait_for_load_state("networkidle")
        seen.operations = await page.locator(".opblock").count()
        seen.text = await page.inner_text("body")
    return seen


class TestDocsOffline:
    async def test_docs_lists_the_operations_without_loading_anything_from_outside(
        self, base_url: str, tmp_path: Path
    ):
        rendered = await render_docs(base_url, tmp_path / "profile")

        assert rendered.outside == [], f"/docs tried to load from outside this server: {rendered.outside}"
        assert rendered.failed == []
        assert rendered.errors == []
        assert "Unable to render this definition" not in rendered.text
        assert "Broadcast Message" in rendered.text
        assert rendered.operations > 20, rendered.text[:2000]


class TestDocsRoutes:
    async def test_the_page_and_its_assets_are_served_and_kept_out_of_the_openapi_document(
        self, tmp_path: Path
    ):
        async with running_app(_settings(tmp_path)) as app, asgi_client(app) as client:
            page = await client.get("/docs")
            assets = [await client.get(f"/docs/{name}") for name in _asset_urls(page)]
            spec = (await client.get("/openapi.json")).json()
            other_file = await client.get("/docs/__init__.py")
            posted = await client.post("/docs/swagger-ui.css")
            redoc = await client.get("/redoc")
            metrics = (await client.get("/metrics")).text

        assert page.status_code == 200
        assert [response.status_code for response in assets] == [200, 200, 200]
        assert assets[0].headers["content-type"].startswith("text/css")
        assert not any(path == "/docs" or path.startswith("/docs/") for path in spec["paths"])
        assert other_file.status_code == 404  # only the page's own assets are served
        assert posted.status_code == 405
        assert "swagger-ui.css" not in metrics  # no metrics label per asset file
        assert redoc.status_code == 404  # ReDoc would need a CDN; it is not offered


def _asset_urls(page: httpx.Response) -> list[str]:
    """The three assets the page links (CSS, favicon, JavaScript), by file name, in page order."""
    names = []
    for marker in ('rel="stylesheet" href="', 'rel="shortcut icon" href="', '<script src="'):
        start = page.text.index(marker) + len(marker)
        url = page.text[start : page.text.index('"', start)]
        assert url.startswith("/docs/"), f"{url} is not served by this app"
        names.append(url.removeprefix("/docs/"))
    return names
