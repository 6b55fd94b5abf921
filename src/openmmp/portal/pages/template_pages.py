"""Placeholder: filled in by the portal's template_pages work."""

from openmmp.portal.web import portal_router

router = portal_router()
