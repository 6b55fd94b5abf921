"""Placeholder: filled in by the portal's keys work."""

from openmmp.portal.web import portal_router

router = portal_router()
