"""graphql-transport-ws: a malformed `subscribe` closes the socket with 4400, as the protocol says."""

from __future__ import annotations

import pytest
from conftest import make_settings
from factories import make_tenant, register
from live_helpers import CHANGES, Client, listening, serving
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
        (
            "string payload",
            {"id": "1", "type": "subscribe", "payload": "subscription { emailStatusChanged { cursor } }"},
        ),
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
        await client.send(
            {
                "id": "2",
                "type": "subscribe",
                "payload": {"query": MUTATION_THEN_SUBSCRIPTION, "operationName": "M", "variables": {"i": GOOD_INPUT}},
            }
        )
        answer = await client.next_data("2")
    assert answer["registerEmail"]["email"]["id"]
    assert await email_count(session_factory) == 1


async def email_count(session_factory) -> int:  # type: ignore[no-untyped-def]
    async with session_factory() as session:
        return int((await session.execute(select(func.count()).select_from(models.Email))).scalar_one())


async def test_with_trusted_documents_only_a_subscription_must_be_registered(
    backend, tmp_path, session_factory, office
):  # type: ignore[no-untyped-def]
    # given a gateway that runs registered documents only, and one registered subscription
    from gateway.documents import register_documents, sha256_hex

    trusted = "subscription Trusted { emailStatusChanged { cursor status } }"
    async with session_factory() as session:
        await register_documents(session=session, documents={sha256_hex(trusted): trusted})
        await session.commit()
    settings = make_settings(backend, tmp_path, purge_interval_seconds=0, trusted_documents_only=True)
    async with serving(settings) as (address, app), Client.connect(address, office.key) as client:
        # when
        await client.subscribe("other", CHANGES)
        refused = await client.receive()
        await client.subscribe("trusted", trusted)
        await listening(app, 1)
        await register(session_factory, office)  # found by the feed's poll: no broker announcement
        change = await client.next_data("trusted")
        # then: the unregistered one gets an error frame; the registered one is live
        assert refused["type"] == "error" and refused["id"] == "other"
        assert refused["payload"][0]["extensions"]["code"] == "TRUSTED_DOCUMENT_REQUIRED"
        assert change["emailStatusChanged"]["status"] == "SENT"
