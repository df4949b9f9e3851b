"""Log lines: JSON in production, human in development, request fields on every line, no secret."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Callable, Iterator

import pytest
from asgi_lifespan import LifespanManager
from conftest import make_settings
from factories import make_tenant
from httpx import ASGITransport, AsyncClient

from gateway.app import create_app
from gateway.logs import configure_logging

BAD_EMAIL = """
query OneEmail($id: ID!) { email(id: $id) { id emailStatus } }
"""
POSTMARK = ("postmark-user", "a-long-postmark-password-kept-secret")


@pytest.fixture
def log_lines() -> Iterator[Callable[[bool], io.StringIO]]:
    """`log_lines(json_lines)`: the root logger writes to a buffer in that format; returns a reader."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)

    def start(json_lines: bool) -> io.StringIO:
        buffer = io.StringIO()
        configure_logging(json_lines=json_lines, level="INFO", stream=buffer)
        return buffer

    yield start
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])


async def test_production_lines_are_json_with_the_request_fields(backend, tmp_path, session_factory, log_lines):  # type: ignore[no-untyped-def]
    # given: a production gateway writing JSON lines
    tenant = await make_tenant(session_factory)
    buffer = log_lines(json_lines=True)
    app = create_app(make_settings(backend, tmp_path, env="production"))
    # when: a query that is a client's mistake (it logs a line of its own)
    async with (
        LifespanManager(app) as manager,
        AsyncClient(transport=ASGITransport(app=manager.app), base_url="http://testserver") as client,
    ):
        response = await client.post(
            "/graphql",
            json={"query": BAD_EMAIL, "variables": {"id": "%%%"}},
            headers={**tenant.auth, "X-Request-Id": "req-42"},
        )
    # then: every line is a JSON object; those of the request carry its id, tenant, operation
    assert response.status_code == 200
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    mine = [line for line in lines if line["request_id"] == "req-42"]
    # (the fast path notes once that this document is the reference executor's to run)
    assert {line["logger"] for line in mine} == {"gateway.errors", "gateway.requests", "gateway.fastpath.plans"}
    for line in mine:
        assert {"time", "level", "logger", "message"} <= line.keys()
        assert (line["tenant"], line["operation"]) == (tenant.id, "OneEmail")
    # and exactly one completion line, with its duration and outcome
    (done,) = [line for line in mine if line["logger"] == "gateway.requests"]
    assert (done["route"], done["status"], done["outcome"]) == ("/graphql", 200, "ok")
    assert done["duration_ms"] > 0


async def test_development_lines_are_for_people(backend, tmp_path, session_factory, log_lines):  # type: ignore[no-untyped-def]
    # given
    tenant = await make_tenant(session_factory)
    buffer = log_lines(json_lines=False)
    app = create_app(make_settings(backend, tmp_path))
    # when
    async with (
        LifespanManager(app) as manager,
        AsyncClient(transport=ASGITransport(app=manager.app), base_url="http://testserver") as client,
    ):
        await client.post(
            "/graphql",
            json={"query": BAD_EMAIL, "variables": {"id": "%%%"}},
            headers={**tenant.auth, "X-Request-Id": "req-43"},
        )
    # then
    (done,) = [line for line in buffer.getvalue().splitlines() if "gateway.requests" in line]
    assert not done.startswith("{")
    assert "POST /graphql 200" in done
    assert f"request_id=req-43 tenant={tenant.id} operation=OneEmail" in done
    assert "outcome=ok" in done


async def test_no_key_or_secret_reaches_the_log(backend, tmp_path, session_factory, log_lines):  # type: ignore[no-untyped-def]
    # given: a key, and a webhook whose credentials are a secret
    tenant = await make_tenant(session_factory)
    buffer = log_lines(json_lines=True)
    settings = make_settings(
        backend, tmp_path, env="production", postmark_username=POSTMARK[0], postmark_password=POSTMARK[1]
    )
    app = create_app(settings)
    delivery = {
        "RecordType": "Delivery",
        "MessageID": "no-such-message",
        "Recipient": "client@example.com",
        "DeliveredAt": "2026-11-01T10:00:00Z",
        "Details": "ok",
        "Metadata": {},
    }
    # when: they are used, rightly and wrongly (errors are logged too)
    async with (
        LifespanManager(app) as manager,
        AsyncClient(transport=ASGITransport(app=manager.app), base_url="http://testserver") as client,
    ):
        await client.post("/graphql", json={"query": BAD_EMAIL, "variables": {"id": "%%%"}}, headers=tenant.auth)
        # a client that pastes its key where an id goes: the error message quotes the value
        await client.post("/graphql", json={"query": BAD_EMAIL, "variables": {"id": tenant.key}}, headers=tenant.auth)
        await client.post("/webhooks/postmark", json=delivery, auth=POSTMARK)
        await client.post("/webhooks/postmark", json=delivery, auth=(POSTMARK[0], POSTMARK[1] + "x"))
    logging.getLogger("gateway.test").warning("a careless line: Authorization: Bearer %s", tenant.key)
    # then: neither appears, in any form
    captured = buffer.getvalue()
    assert captured.count("gateway.requests") == 4
    basic = base64.b64encode(f"{POSTMARK[0]}:{POSTMARK[1]}".encode()).decode()
    for secret in (tenant.key, tenant.read_key, POSTMARK[1], basic, tenant.key[3:]):
        assert secret not in captured
