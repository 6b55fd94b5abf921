"""URL prefixes shared by the router and the middleware."""

API_PREFIX = "/api/v1"
