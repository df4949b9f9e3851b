"""Traces: one screen request is one trace, its SQL statements under the request's span,
whether strawberry or a compiled plan answers it."""

from __future__ import annotations

import pytest
from asgi_lifespan import LifespanManager
from conftest import make_settings
from factories import make_tenant, register
from httpx import ASGITransport, AsyncClient
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from gateway.app import create_app
from gateway.tracing import tracing_for

EMAILS_SCREEN = """
query EmailsScreen($first: Int) {
  emails(first: $first) {
    totalCount
    edges { node { id subject emailStatus relation { name } documents { title } invoice { number }
      details { failure { category } opens { count } } } }
  }
}
"""
WITH_HISTORY = """
query EmailsHistory($first: Int) {
  emails(first: $first) { edges { node { id subject details { history { source } } } } }
}
"""


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
async def traced(backend, tmp_path, session_factory, exporter):  # type: ignore[no-untyped-def]
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app(make_settings(backend, tmp_path), tracer_provider=provider)
    async with (
        LifespanManager(app) as manager,
        AsyncClient(transport=ASGITransport(app=manager.app), base_url="http://testserver") as client,
    ):
        yield client, app
    provider.shutdown()


def _is_sql(span: ReadableSpan) -> bool:
    attributes = span.attributes or {}
    return "db.system" in attributes or "db.system.name" in attributes


def _request_trace(spans: list[ReadableSpan]) -> tuple[ReadableSpan, list[ReadableSpan]]:
    """The request's root span, and every span of its trace."""
    roots = [
        s
        for s in spans
        if s.parent is None
        and s.kind is SpanKind.SERVER
        and s.attributes.get("http.target", s.attributes.get("url.path")) == "/graphql"  # type: ignore[union-attr]
    ]
    assert len(roots) == 1, [s.name for s in roots]
    trace_id = roots[0].context.trace_id  # type: ignore[union-attr]
    return roots[0], [s for s in spans if s.context.trace_id == trace_id]  # type: ignore[union-attr]


def _under(span: ReadableSpan, root: ReadableSpan, by_id: dict[int, ReadableSpan]) -> bool:
    while span.parent is not None:
        if span.parent.span_id == root.context.span_id:  # type: ignore[union-attr]
            return True
        span = by_id[span.parent.span_id]
    return False


async def test_a_screen_request_is_one_trace_with_its_sql_under_it(traced, exporter, session_factory):  # type: ignore[no-untyped-def]
    client, app = traced
    # given: a screen's worth of e-mails
    tenant = await make_tenant(session_factory)
    for n in range(3):
        await register(session_factory, tenant, n=n)
    # when: the screen is asked for (the compiled plan answers), then the screen with the
    # e-mails' history, which the plans leave to strawberry
    answered_by = []
    for attempt, query in enumerate((EMAILS_SCREEN, WITH_HISTORY)):
        exporter.clear()
        before = app.state.metrics.fast_path.labels("plan")._value.get()
        response = await client.post(
            "/graphql", json={"query": query, "variables": {"first": 10}}, headers=tenant.read_auth
        )
        assert response.status_code == 200 and "errors" not in response.json(), response.text
        answered_by.append("plan" if app.state.metrics.fast_path.labels("plan")._value.get() > before else "reference")
        spans = list(exporter.get_finished_spans())
        # then: one trace for the request, with every SQL statement of the request under its span
        root, trace = _request_trace(spans)
        by_id = {s.context.span_id: s for s in trace}  # type: ignore[union-attr]
        sql = [s for s in trace if _is_sql(s)]
        assert sql, [s.name for s in trace]
        assert all(_under(s, root, by_id) for s in sql)
        # and no SQL statement of the request went to a trace of its own
        assert not [s for s in spans if _is_sql(s) and s.parent is None and s.context.trace_id != root.context.trace_id]  # type: ignore[union-attr]
        if attempt == 1:
            assert any(s.name.startswith("GraphQL Query") for s in trace), [s.name for s in trace]
    assert answered_by == ["plan", "reference"]


def test_tracing_is_off_without_an_endpoint(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # given / when
    tracing = tracing_for(make_settings("sqlite+aiosqlite:///x.db", tmp_path))
    # then
    assert tracing is None


def test_tracing_exports_over_otlp_when_an_endpoint_is_set(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # given / when
    tracing = tracing_for(make_settings("sqlite+aiosqlite:///x.db", tmp_path, otlp_endpoint="http://127.0.0.1:4318"))
    # then
    assert tracing is not None
    tracing.stop()
    tracing.provider.shutdown()  # type: ignore[attr-defined]
