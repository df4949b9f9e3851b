"""Stock clients resume through connectionParams: `resume` maps operation ids to their last cursors."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from conftest import make_settings
from factories import make_tenant
from live_helpers import CHANGES, Client, listening, record_via_api, register_via_api, serving

from gateway.ids import decode_position

RESUMABLE = """
subscription Resumable($filter: EmailStatusChangeFilter) {
  emailStatusChanged(filter: $filter) { cursor status email { id } }
}
"""


@contextlib.asynccontextmanager
async def connected(
    address: str, key: str, resume: dict[str, str] | None
) -> AsyncIterator[tuple[Client, dict[str, Any]]]:
    """A socket initialised with `resume`, as a graphql-ws connectionParams function gives it; (client, ack)."""
    async with Client.connect(address, key, init=False) as client:
        params: dict[str, Any] = {"authorization": f"Bearer {key}"}
        if resume is not None:
            params["resume"] = resume
        await client.send({"type": "connection_init", "payload": params})
        ack = await client.receive()
        yield client, ack


def _changes(got: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(c["email"]["id"], c["status"]) for c in got]


@pytest.fixture
def settings_of(backend, tmp_path):  # type: ignore[no-untyped-def]
    return make_settings(backend, tmp_path, purge_interval_seconds=0, ws_init_timeout_seconds=2)


async def test_a_resubscription_without_since_replays_after_its_resume_cursor_across_a_restart(
    settings_of, session_factory
):  # type: ignore[no-untyped-def]
    tenant = await make_tenant(session_factory)
    # given: an operation that received one change, then the server went away
    async with serving(settings_of) as (address, app):
        first = await register_via_api(address, tenant.key, "r-1")
        async with connected(address, tenant.key, {}) as (client, _):
            await client.subscribe("op-1", RESUMABLE)
            await listening(app, 1)
            await record_via_api(address, tenant.key, first, "DELIVERED", "d-1")
            cursor = (await client.next_data("op-1"))["emailStatusChanged"]["cursor"]
        # changes made while the client was away
        second = await register_via_api(address, tenant.key, "r-2")
        await record_via_api(address, tenant.key, first, "OPENED", "o-1", occurred_at="2026-11-03T10:00:00Z")
    async with serving(settings_of) as (address, app):
        # when: the client reconnects and resubscribes with its first variables (no `since`)
        async with connected(address, tenant.key, {"op-1": cursor}) as (client, _):
            await client.subscribe("op-1", RESUMABLE)
            replayed = [(await client.next_data("op-1"))["emailStatusChanged"] for _ in range(2)]
            # then: what it missed, then the live stream
            assert _changes(replayed) == [(second, "SENT"), (first, "OPENED")]
            await record_via_api(address, tenant.key, second, "DELIVERED", "d-2")
            assert _changes([(await client.next_data("op-1"))["emailStatusChanged"]]) == [(second, "DELIVERED")]


async def test_an_operation_that_had_received_nothing_resumes_from_the_ack_cursor(settings_of, session_factory):  # type: ignore[no-untyped-def]
    tenant = await make_tenant(session_factory)
    async with serving(settings_of) as (address, app):
        earlier = await register_via_api(address, tenant.key, "e-0")
        # given: the ack's cursor, which the client keeps for the operations it starts on this socket
        async with connected(address, tenant.key, {}) as (client, ack):
            assert ack["type"] == "connection_ack"
            seed = ack["payload"]["cursor"]
            decode_position(seed)
            await client.subscribe("quiet", RESUMABLE, {"filter": {"statuses": ["OPENED"]}})
            await listening(app, 1)
        # when: an OPENED comes while it is away, and it resumes under the same id
        await record_via_api(address, tenant.key, earlier, "OPENED", "o-0")
        async with connected(address, tenant.key, {"quiet": seed}) as (client, _):
            await client.subscribe("quiet", RESUMABLE, {"filter": {"statuses": ["OPENED"]}})
            # then: the change reaches it, and only what matches its filter
            got = (await client.next_data("quiet"))["emailStatusChanged"]
            assert (got["email"]["id"], got["status"]) == (earlier, "OPENED")
            with pytest.raises(TimeoutError):
                await client.receive(timeout=0.5)


async def test_an_ack_cursor_of_a_tenant_without_changes_replays_from_the_beginning_of_its_log(
    settings_of, session_factory
):  # type: ignore[no-untyped-def]
    tenant = await make_tenant(session_factory)
    other = await make_tenant(session_factory)
    async with serving(settings_of) as (address, _):
        await register_via_api(address, other.key, "theirs")
        async with connected(address, tenant.key, {}) as (_, ack):
            seed = ack["payload"]["cursor"]
        mine = await register_via_api(address, tenant.key, "mine")
        async with connected(address, tenant.key, {"1": seed}) as (client, _):
            await client.subscribe("1", RESUMABLE)
            got = (await client.next_data("1"))["emailStatusChanged"]
            assert (got["email"]["id"], got["status"]) == (mine, "SENT")


async def test_other_operations_and_an_explicit_since_are_not_resumed(settings_of, session_factory):  # type: ignore[no-untyped-def]
    tenant = await make_tenant(session_factory)
    async with serving(settings_of) as (address, app):
        email_id = await register_via_api(address, tenant.key, "x-1")
        async with connected(address, tenant.key, {}) as (client, ack):
            seed = ack["payload"]["cursor"]
        await record_via_api(address, tenant.key, email_id, "DELIVERED", "d")
        async with connected(address, tenant.key, {"old": seed}) as (client, _):
            # a new operation id starts live, as without `resume`
            await client.subscribe("new", CHANGES)
            await listening(app, 1)
            await record_via_api(address, tenant.key, email_id, "OPENED", "o", occurred_at="2026-11-03T10:00:00Z")
            got = (await client.next_data("new"))["emailStatusChanged"]
            assert got["status"] == "OPENED"


@pytest.mark.parametrize(
    "resume",
    [["not", "an", "object"], {"op": 42}, {"op": "garbage"}, {"x" * 200: "garbage"}],
    ids=["list", "number", "bad-cursor", "long-id"],
)
async def test_a_malformed_resume_is_refused_at_connection(settings_of, session_factory, resume):  # type: ignore[no-untyped-def]
    tenant = await make_tenant(session_factory)
    async with serving(settings_of) as (address, _), Client.connect(address, tenant.key, init=False) as client:
        # when
        await client.send(
            {"type": "connection_init", "payload": {"authorization": f"Bearer {tenant.key}", "resume": resume}}
        )
        # then
        code, _reason = await client.closed_with()
        assert code == 4403
