"""Placeholder: filled in by the portal's messages work."""

from openmmp.portal.web import portal_router

router = portal_router()
