"""Prometheus metrics. Route labels are templates (`/api/v1/channel/{account_id}`), never raw paths."""

from prometheus_client import Counter, Histogram

REQUESTS = Counter("openmmp_http_requests_total", "HTTP requests answered", ["method", "route", "status"])
REQUEST_LATENCY = Histogram(
    "openmmp_http_request_duration_seconds",
    "Time to answer HTTP requests",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
