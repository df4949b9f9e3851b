"""graphql-transport-ws: a malformed `subscribe` closes the socket with 4400, as the protocol says."""

from __future__ import annotations

import pytest
from conftest import make_settings
from factories import make_tenant
from live_helpers import CHANGES, Client, serving
from sqlalchemy import func, select

from gateway import models

MUTATION_THEN_SUBSCRIPTION = """
mutation M($i: RegisterEmailInput!) { registerEmail(input: $i) { email { id } } }
subscription S { emailStatusChanged { cursor } }
"""
GOOD_INPUT = {"externalId": "ws-1", "subject": "Hello", "recipient": "a@example.com"}


@pytest.fixture
async def live(backend, tmp_path, session_factory):  # type: ignore[no-untyped-def]
    settings = make_settings(backend, tmp_path, purge_interval_seconds=0, ws_init_timeout_seconds=1)
    async with serving(settings) as (address, app):
        yield address, app


@pytest.fixture
async def office(session_factory):  # type: ignore[no-untyped-def]
    return await make_tenant(session_factory)


def _malformed() -> list[tuple[str, dict[str, object]]]:
    query = {"query": CHANGES}
    return [
        ("numeric id", {"id": 1, "type": "subscribe", "payload": query}),
        ("empty id", {"id": "", "type": "subscribe", "payload": query}),
        ("string payload", {"id": "1", "type": "subscribe", "payload": "subscription { emailStatusChanged { cursor } }"}),
        ("list payload", {"id": "1", "type": "subscribe", "payload": [query]}),
        ("no query", {"id": "1", "type": "subscribe", "payload": {"variables": {}}}),
        ("numeric query", {"id": "1", "type": "subscribe", "payload": {"query": 42}}),
        ("list variables", {"id": "1", "type": "subscribe", "payload": {**query, "variables": [1]}}),
        ("numeric operationName", {"id": "1", "type": "subscribe", "payload": {**query, "operationName": 7}}),
    ]


@pytest.mark.parametrize(("name", "message"), _malformed(), ids=[c[0] for c in _malformed()])
async def test_a_malformed_subscribe_closes_the_socket_with_4400(live, office, name, message):  # type: ignore[no-untyped-def]
    # given
    address, _ = live
    async with Client.connect(address, office.key) as client:
        # when
        await client.send(message)
        # then
        code, reason = await client.closed_with(timeout=5)
    assert code == 4400
    assert "subscribe" in reason


async def test_several_operations_without_a_name_close_the_socket_and_run_nothing(live, office, session_factory):  # type: ignore[no-untyped-def]
    # given
    address, _ = live
    async with Client.connect(address, office.key) as client:
        # when
        await client.subscribe("1", MUTATION_THEN_SUBSCRIPTION, {"i": GOOD_INPUT})
        # then
        code, reason = await client.closed_with(timeout=5)
    assert (code, reason) == (4400, "Must provide operation name if query contains multiple operations.")
    assert await email_count(session_factory) == 0
    # and with a name, that operation runs
    async with Client.connect(address, office.key) as client:
        await client.send({"id": "2", "type": "subscribe", "payload": {"query": MUTATION_THEN_SUBSCRIPTION, "operationName": "M", "variables": {"i": GOOD_INPUT}}})
        answer = await client.next_data("2")
    assert answer["registerEmail"]["email"]["id"]
    assert await email_count(session_factory) == 1


async def email_count(session_factory) -> int:  # type: ignore[no-untyped-def]
    async with session_factory() as session:
        return int((await session.execute(select(func.count()).select_from(models.Email))).scalar_one())
