"""Prometheus metrics: one registry per app, so that tests can build many apps."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["Metrics", "MetricsMiddleware"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "gateway_http_requests", "HTTP requests by route and status.",
            ["method", "route", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "gateway_http_request_duration_seconds", "HTTP request latency by route.",
            ["route"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.graphql_errors = Counter(
            "gateway_graphql_errors", "GraphQL errors returned, by kind (expected or masked).",
            ["kind"], registry=self.registry,
        )
        self.events = Counter(
            "gateway_events_ingested", "Events recorded through the ingestion path, by source.",
            ["source"], registry=self.registry,
        )

        self.fast_path = Counter(
            "gateway_fast_path", "POSTed queries by how they were answered: plan, or reference.",
            ["answered_by"], registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _route(path: str) -> str:
    # Low-cardinality labels: never the raw path (tracking tokens are in it).
    for prefix in ("/graphql", "/webhooks/", "/t/", "/healthz", "/readyz", "/metrics"):
        if path.startswith(prefix):
            return path if prefix == "/webhooks/" and path.count("/") == 2 else prefix.rstrip("/")
    return "other"


class MetricsMiddleware:
    """Counts and times every HTTP request (plain ASGI: no per-request task overhead)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = _route(scope["path"])
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
