"""/docs without the internet: Swagger UI's assets are served by the app itself, from a pinned package.

FastAPI's default page loads Swagger UI from a CDN and its favicon from fastapi.tiangolo.com, so it is
blank wherever the browser has no internet access (many self-hosted deployments). `fastapi-swagger`
ships the Swagger UI dist files (5.x, which renders the OpenAPI 3.1 document FastAPI emits; the
`swagger-ui-bundle` package stops at 4.15, which cannot); this module serves them and renders FastAPI's
own page around them, so the page behaves as FastAPI's does.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

DOCS_URL = "/docs"
ASSETS_PACKAGE = "fastapi_swagger.resources"
JS, CSS, FAVICON = "swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"


def assets_directory() -> Path:
    """Where the installed package keeps the Swagger UI files; raises if one of them is missing."""
    directory = Path(str(resources.files(ASSETS_PACKAGE)))
    missing = [name for name in (JS, CSS, FAVICON) if not (directory / name).is_file()]
    if missing:
        raise RuntimeError(f"Swagger UI assets missing from {directory}: {', '.join(missing)}")
    return directory


class _Assets:
    """The page's asset files by name, as a plain ASGI app.

    Not a Router: a Router would record its inner route on the request, and metrics would then label
    it with the bare file name (`/swagger-ui.css`) as if that were a route of the app.
    """

    def __init__(self, directory: Path) -> None:
        self._files = {name: directory / name for name in (JS, CSS, FAVICON)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Below the mount: the request's path less the root path the mount extended.
        path, root = scope["path"], scope.get("root_path", "")
        file = self._files.get(path.removeprefix(root).removeprefix("/"))
        response: Response
        if file is None:
            response = PlainTextResponse("Not Found", status_code=404)
        elif scope["method"] not in ("GET", "HEAD"):
            allow = {"Allow": "GET, HEAD"}
            response = PlainTextResponse("Method Not Allowed", status_code=405, headers=allow)
        else:
            response = FileResponse(file)
        await response(scope, receive, send)


def install_docs(app: FastAPI) -> None:
    """Serve Swagger UI at /docs with every asset from this server (create the app with `docs_url=None`).

    The assets are at /docs/<file>, only the three the page uses (the package's other files are not
    served). Neither the page nor the assets appear in the OpenAPI document. The page follows `root_path`
    like FastAPI's own and takes `app.swagger_ui_parameters`; there is no OAuth2 redirect page (the API
    authenticates with API keys). Raises here, at start, rather than showing a blank page if the assets
    are missing.
    """
    if app.openapi_url is None:
        return
    openapi_url = app.openapi_url
    directory = assets_directory()

    async def swagger_ui_html(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{DOCS_URL}/{JS}",
            swagger_css_url=f"{root}{DOCS_URL}/{CSS}",
            swagger_favicon_url=f"{root}{DOCS_URL}/{FAVICON}",
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    app.add_route(DOCS_URL, swagger_ui_html, include_in_schema=False)
    # Mounted under the page's own path: everything below /docs belongs to the docs, nothing else.
    app.mount(DOCS_URL, _Assets(directory), name="docs-assets")
