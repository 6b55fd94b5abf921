"""Mounts the portal: its pages under /portal and its files under /portal/static."""

from __future__ import annotations

import importlib.util

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from openmmp.portal.pages import (
    billing,
    campaigns,
    channels,
    companies,
    dashboard,
    keys,
    messages,
    signin,
    template_pages,
    webhooks,
)
from openmmp.portal.web import PORTAL

PAGES = (signin, dashboard, companies, channels, keys, template_pages, campaigns, messages, webhooks, billing)


def install_portal(app: FastAPI) -> None:
    # FastAPI reads the portal's forms and uploads with python-multipart, found by this name.
    if importlib.util.find_spec("python_multipart") is None:
        raise RuntimeError("python-multipart is missing: the portal's forms cannot be read")
    for page in PAGES:
        app.include_router(page.router)
    app.mount(PORTAL + "/static", StaticFiles(packages=[("openmmp.portal", "static")]), name="portal-static")
