"""Routes served straight from the app's `__call__`, past Starlette's middleware stack and router.

A request to a FastAPI app passes six middleware layers and a walk over every route before its endpoint
runs; for the providers' callbacks (two or three per message sent, each a few lines of work of its own)
that was a third of the API process's CPU. A `DirectRoute` is declared and documented like any route,
but a `DirectApp` serves a request that fully matches one (path and method) itself: through the one
middleware every request must pass (given by `serve_direct`), to the route's endpoint, with errors
rendered by the app's own exception handlers. Anything else (including a direct route's path with
another method) takes the usual way.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
ExceptionHandler = Callable[[Request, Any], Response | Awaitable[Response]]


class DirectRoute(APIRoute):
    """A route whose endpoint takes its path parameters as the strings they are and the request, and
    answers a Response itself: called without FastAPI's per-request dependency solving (FastAPI's hook
    for custom routes), and by a `DirectApp` without the middleware stack either."""

    handler: Handler

    def get_route_handler(self) -> Handler:
        endpoint = self.endpoint
        names = {param.alias: param.name for param in self.dependant.path_params}

        async def handler(request: Request) -> Response:
            params = {names[alias]: value for alias, value in request.path_params.items()}
            response: Response = await endpoint(request=request, **params)
            return response

        self.handler = handler
        return handler


class DirectApp(FastAPI):
    """A FastAPI app that serves its `DirectRoute`s directly once `serve_direct` was called."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._direct_app: ASGIApp | None = None
        self._direct_routes: list[DirectRoute] | None = None

    def serve_direct(self, wrap: Callable[[ASGIApp], ASGIApp]) -> None:
        """Serve direct routes inside `wrap(app)`: the middleware that every request must pass."""
        self._direct_app = wrap(self._call_direct)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._direct_app is not None:
            if self._direct_routes is None:  # routes are all added by the first request
                self._direct_routes = [
                    context.original_route
                    for context in iter_route_contexts(self.router.routes)
                    # At its own path: one included under a prefix is left to the router.
                    if isinstance(context.original_route, DirectRoute)
                    and context.path == context.original_route.path
                ]
            for route in self._direct_routes:
                match, child = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child)
                    scope["app"] = self
                    await self._direct_app(scope, receive, send)
                    return
        await super().__call__(scope, receive, send)

    async def _call_direct(self, scope: Scope, receive: Receive, send: Send) -> None:
        route: DirectRoute = scope["route"]
        request = Request(scope, receive)
        try:
            response = await route.handler(request)
        except Exception as exc:
            handle = self._exception_handler(exc)
            if handle is None:
                raise
            answer = handle(request, exc)
            response = await answer if inspect.isawaitable(answer) else answer
        await response(scope, receive, send)

    def _exception_handler(self, exc: Exception) -> ExceptionHandler | None:
        for kind in type(exc).__mro__:
            handler = self.exception_handlers.get(kind)
            if handler is not None:
                return handler
        return None
