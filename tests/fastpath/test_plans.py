"""Plans are compiled from the document and the schema, on first sight; a document the
plans cannot serve is said so once, with its reason."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from asgi_lifespan import LifespanManager
from conftest import make_settings
from factories import make_tenant, register
from httpx import ASGITransport, AsyncClient

from gateway.app import create_app

SCREEN = "query Screen($first: Int) { emails(first: $first) { edges { node { subject emailStatus } } } }"
WITH_HISTORY = "query Details { emails(first: 2) { edges { node { details { history { source } } } } } }"


def _data(response) -> dict:  # type: ignore[no-untyped-def, type-arg]
    body = response.json()
    assert response.status_code == 200, body
    assert "errors" not in body, body
    return body["data"]  # type: ignore[no-any-return]


def _served(metrics: str, by: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(f'gateway_fast_path_total{{answered_by="{by}"}}'):
            return float(line.split()[-1])
    return 0.0


def _unsupported(metrics: str) -> dict[str, float]:
    prefix = "gateway_fast_path_unsupported_total{"
    found = {}
    for line in metrics.splitlines():
        if line.startswith(prefix):
            labels, value = line[len(prefix) :].split("} ")
            found[labels] = float(value)
    return found


@pytest.fixture
async def gateway(backend: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    app = create_app(make_settings(backend, tmp_path, fast_path=True))
    async with (
        LifespanManager(app) as manager,
        AsyncClient(transport=ASGITransport(app=manager.app), base_url="http://t") as client,
    ):
        yield client


async def test_the_first_request_of_a_document_runs_its_plan(gateway, session_factory) -> None:  # type: ignore[no-untyped-def]
    # given a document never seen before
    tenant = await make_tenant(session_factory)
    for _ in range(3):
        await register(session_factory, tenant)
    # when it is sent once
    response = await gateway.post("/graphql", json={"query": SCREEN, "variables": {"first": 2}}, headers=tenant.auth)
    metrics = (await gateway.get("/metrics")).text
    # then the plan answered it: nothing was learned from the reference's answer first
    assert len(_data(response)["emails"]["edges"]) == 2
    assert _served(metrics, "plan") == 1
    assert _served(metrics, "reference") == 0


async def test_an_unsupported_document_is_reported_once_with_its_reason(  # type: ignore[no-untyped-def]
    gateway, session_factory, caplog
) -> None:
    # given a screen query with a field the plans leave to the reference (the history)
    tenant = await make_tenant(session_factory)
    for _ in range(2):
        await register(session_factory, tenant)
    # when it is sent three times
    with caplog.at_level(logging.INFO, logger="gateway.fastpath.plans"):
        answers = [await gateway.post("/graphql", json={"query": WITH_HISTORY}, headers=tenant.auth) for _ in range(3)]
    metrics = (await gateway.get("/metrics")).text
    # then the reference answered each, and the reason was said once: one log line, one count
    assert all(len(_data(a)["emails"]["edges"]) == 2 for a in answers)
    assert _served(metrics, "reference") == 3
    assert _unsupported(metrics) == {'reason="history"': 1.0}
    lines = [r.getMessage() for r in caplog.records if "left to the reference" in r.getMessage()]
    assert lines == ["fast path: operation Details left to the reference executor (history)"]
