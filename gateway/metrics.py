"""Prometheus metrics: one registry per app, so that tests can build many apps."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from gateway.ingest import Change

__all__ = ["Metrics", "MetricsMiddleware", "route_of"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
# Persisted documents are named by the people who persist them: past this many names,
# the rest share one label, so a mistake cannot grow the series without bound.
MAX_OPERATION_LABELS = 200
OTHER_OPERATION = "_other"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "gateway_http_requests",
            "HTTP requests by route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "gateway_http_request_duration_seconds",
            "HTTP request latency by route.",
            ["route"],
            registry=self.registry,
            buckets=_LATENCY_BUCKETS,
        )
        self.graphql_errors = Counter(
            "gateway_graphql_errors",
            "GraphQL errors returned, by kind (expected or masked).",
            ["kind"],
            registry=self.registry,
        )
        self.events = Counter(
            "gateway_events_ingested",
            "Events recorded through the ingestion path, by source.",
            ["source"],
            registry=self.registry,
        )

        self.fast_path = Counter(
            "gateway_fast_path",
            "POSTed queries by how they were answered: plan, or reference.",
            ["answered_by"],
            registry=self.registry,
        )
        self.fast_path_unsupported = Counter(
            "gateway_fast_path_unsupported",
            "Query documents the compiled plans do not serve (each counted once, when first seen), by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.websockets = Gauge(
            "gateway_websockets_open",
            "Websocket connections open now.",
            registry=self.registry,
        )
        self.websocket_closes = Counter(
            "gateway_websocket_closes",
            "Websocket connections closed, by close code (1013: a slow subscriber was disconnected).",
            ["code"],
            registry=self.registry,
        )
        self.subscriptions = Gauge(
            "gateway_subscriptions_active",
            "Live subscriptions listening to the change feed now.",
            registry=self.registry,
        )
        self.feed_lag = Gauge(
            "gateway_change_feed_lag_seconds",
            "Seconds between the recording of the newest change the feed delivered and its delivery.",
            registry=self.registry,
        )
        self._feed_read = time.monotonic()
        self.feed_poll_age = Gauge(
            "gateway_change_feed_poll_age_seconds",
            "Seconds since the change feed last read the change log (it reads at least every poll interval).",
            registry=self.registry,
        )
        self.feed_poll_age.set_function(lambda: time.monotonic() - self._feed_read)
        self.status_changes = Counter(
            "gateway_status_changes",
            "Committed e-mail status changes, by new status, failure category and event source.",
            ["status", "failure_category", "source"],
            registry=self.registry,
        )
        self.operation_latency = Histogram(
            "gateway_persisted_operation_duration_seconds",
            "Latency of persisted (trusted) documents, by operation name.",
            ["operation"],
            registry=self.registry,
            buckets=_LATENCY_BUCKETS,
        )
        self._operations: set[str] = set()

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # The change feed's observer (`gateway.live.FeedObserver`).
    def subscribed(self, delta: int) -> None:
        self.subscriptions.inc(delta)

    def feed_read(self) -> None:
        self._feed_read = time.monotonic()

    def delivered(self, recorded_at: datetime) -> None:
        self.feed_lag.set(max(0.0, time.time() - recorded_at.timestamp()))

    # The ingestion path's counter (`gateway.ingest.ChangeCounter`), called after commit.
    def count_changes(self, changes: Sequence[Change]) -> None:
        for change in changes:
            category = change.failure_category.value if change.failure_category is not None else ""
            self.status_changes.labels(change.status.value, category, change.source or "").inc()

    def observe_persisted_operation(self, operation: str, seconds: float) -> None:
        """The hook for persisted (trusted) documents: one observation of `operation`'s latency.

        Only documents the operators persisted may be named here: arbitrary clients'
        operation names would be unbounded labels. Past `MAX_OPERATION_LABELS` names
        the rest are counted together under `_other`.
        """
        if operation not in self._operations:
            if len(self._operations) >= MAX_OPERATION_LABELS:
                operation = OTHER_OPERATION
            else:
                self._operations.add(operation)
        self.operation_latency.labels(operation).observe(seconds)


def route_of(path: str) -> str:
    """A low-cardinality label for a path: never the raw path (tracking tokens are in it)."""
    for prefix in ("/graphql", "/webhooks/", "/t/", "/healthz", "/readyz", "/metrics"):
        if path.startswith(prefix):
            return path if prefix == "/webhooks/" and path.count("/") == 2 else prefix.rstrip("/")
    return "other"


class MetricsMiddleware:
    """Counts and times every HTTP request, and counts websockets open and their close codes
    (plain ASGI: no per-request task overhead).

    A websocket's close code is the first one seen: the server's `websocket.close`
    (1013 for a slow subscriber, 44xx for protocol errors) or the client's
    `websocket.disconnect`.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
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
            route = route_of(scope["path"])
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        accepted = False
        code: int | None = None

        async def receive_wrapper() -> Message:
            nonlocal code
            message = await receive()
            if message["type"] == "websocket.disconnect" and code is None:
                code = int(message.get("code", 1005))
            return message

        async def send_wrapper(message: Message) -> None:
            nonlocal accepted, code
            if message["type"] == "websocket.accept" and not accepted:
                accepted = True
                self.metrics.websockets.inc()
            elif message["type"] == "websocket.close" and code is None:
                code = int(message.get("code", 1000))
            await send(message)

        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        finally:
            if accepted:
                self.metrics.websockets.dec()
            # 1006: the connection ended with no close frame either way (the app failed).
            self.metrics.websocket_closes.labels(str(code if code is not None else 1006)).inc()
