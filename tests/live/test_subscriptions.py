"""Live status over graphql-transport-ws: auth, filters, tenants, resume, slow clients."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
import websockets
from conftest import make_settings
from factories import make_tenant
from live_helpers import (
    CHANGES,
    PATIENCE,
    Client,
    expect_error,
    listening,
    record_via_api,
    register_via_api,
    serving,
)

from gateway.ids import decode_position, encode_id


@pytest.fixture
async def live(backend, tmp_path, session_factory):  # type: ignore[no-untyped-def]
    settings = make_settings(
        backend, tmp_path, purge_interval_seconds=0, ws_init_timeout_seconds=1, subscriber_queue_size=50
    )
    async with serving(settings) as (address, app):
        yield address, app


@pytest.fixture
async def office(session_factory):  # type: ignore[no-untyped-def]
    return await make_tenant(session_factory)


async def test_a_subscriber_sees_its_changes_as_they_happen(live, office):  # type: ignore[no-untyped-def]
    address, app = live
    async with Client.connect(address, office.key) as client:
        await client.subscribe("1", CHANGES)
        await listening(app, 1)
        email_id = await register_via_api(address, office.key, "m-1", relation={"externalId": "r", "name": "Bakery"})
        first = (await client.next_data("1"))["emailStatusChanged"]
        assert (first["previousStatus"], first["status"]) == (None, "SENT")
        assert first["email"] == {
            "id": email_id,
            "subject": "Subject m-1",
            "emailStatus": "SENT",
            "relation": {"name": "Bakery"},
        }
        await record_via_api(address, office.key, email_id, "DELIVERED", "d-1")
        second = (await client.next_data("1"))["emailStatusChanged"]
        assert (second["previousStatus"], second["status"]) == ("SENT", "DELIVERED")
        assert second["cursor"] != first["cursor"]


async def test_a_subscriber_holds_no_connection_between_changes(live, office):  # type: ignore[no-untyped-def]
    # given: subscribers whose selection reads the database (the relation) for each change
    address, app = live
    async with Client.connect(address, office.key) as one, Client.connect(address, office.key) as two:
        await one.subscribe("1", CHANGES)
        await two.subscribe("2", CHANGES)
        await listening(app, 2)
        # when: a change reaches them
        await register_via_api(address, office.key, "m-1", relation={"externalId": "r", "name": "Bakery"})
        assert (await one.next_data("1"))["emailStatusChanged"]["email"]["relation"] == {"name": "Bakery"}
        assert (await two.next_data("2"))["emailStatusChanged"]["email"]["relation"] == {"name": "Bakery"}
        # then: once sent, no connection stays checked out (idle in a transaction) for them
        async with asyncio.timeout(PATIENCE):
            while app.state.engine.pool.checkedout():
                await asyncio.sleep(0.01)


async def test_a_change_committed_before_subscribing_is_not_news_even_if_the_feed_reads_it_later(
    backend, tmp_path, session_factory
):  # type: ignore[no-untyped-def]
    from factories import register

    settings = make_settings(backend, tmp_path, purge_interval_seconds=0, feed_poll_seconds=60)
    tenant = await make_tenant(session_factory)
    old, new = await register(session_factory, tenant, n=1), await register(session_factory, tenant, n=2)
    async with serving(settings) as (address, app):
        # given: a change committed and not announced: the feed has not read it
        await _burst(session_factory, [old], "before")
        async with Client.connect(address, tenant.key) as client:
            await client.subscribe("1", CHANGES)
            await listening(app, 1)
            # when: the feed reads it after the subscription started, then a new change comes
            app.state.feed.poke()
            await record_via_api(address, tenant.key, encode_id("Email", new.id), "OPENED", "after")
            # then: only the new change is news
            got = (await client.next_data("1"))["emailStatusChanged"]
            assert (got["email"]["id"], got["status"]) == (encode_id("Email", new.id), "OPENED")
            with pytest.raises(TimeoutError):
                await client.receive(timeout=0.5)


async def test_filters_combine_and_run_on_the_server(live, office):  # type: ignore[no-untyped-def]
    address, app = live
    a = await register_via_api(
        address,
        office.key,
        "a",
        relation={"externalId": "r1", "name": "One"},
        documents=[{"externalId": "d1", "title": "T"}],
    )
    b = await register_via_api(
        address,
        office.key,
        "b",
        relation={"externalId": "r2", "name": "Two"},
        invoice={"externalId": "i1", "number": "1"},
    )
    data = await Client_ids(address, office.key)
    async with Client.connect(address, office.key) as client:
        await client.subscribe("docs", CHANGES, {"filter": {"documentId": data["document"], "statuses": ["DELIVERED"]}})
        await client.subscribe("inv", CHANGES, {"filter": {"invoiceId": data["invoice"]}})
        await client.subscribe("rel", CHANGES, {"filter": {"relationId": data["relation_one"], "emailIds": [a]}})
        await listening(app, 3)
        await record_via_api(address, office.key, b, "OPENED", "o-b")  # invoice only
        await record_via_api(address, office.key, a, "DELIVERY_FAILED", "f-a")  # relation only (not DELIVERED)
        await record_via_api(
            address, office.key, a, "DELIVERED", "d-a", occurred_at="2026-11-02T10:00:00Z"
        )  # docs + rel
        seen: dict[str, list[str]] = {"docs": [], "inv": [], "rel": []}
        for _ in range(4):
            message = await client.receive()
            seen[message["id"]].append(message["payload"]["data"]["emailStatusChanged"]["status"])
        assert seen == {"docs": ["DELIVERED"], "inv": ["OPENED"], "rel": ["DELIVERY_FAILED", "DELIVERED"]}
        with pytest.raises(TimeoutError):
            await client.receive(timeout=0.5)


async def Client_ids(address: str, key: str) -> dict[str, str]:  # noqa: N802
    from live_helpers import gql

    data = await gql(
        address, key, "{ emails { edges { node { relation { id name } documents { id } invoice { id } } } } }"
    )
    ids: dict[str, str] = {}
    for edge in data["emails"]["edges"]:
        node = edge["node"]
        if node["relation"]["name"] == "One":
            ids["relation_one"] = node["relation"]["id"]
            ids["document"] = node["documents"][0]["id"]
        else:
            ids["invoice"] = node["invoice"]["id"]
    return ids


async def test_a_subscriber_never_sees_another_tenants_changes(live, office, session_factory):  # type: ignore[no-untyped-def]
    address, app = live
    other = await make_tenant(session_factory)
    theirs = await register_via_api(address, other.key, "theirs")
    async with Client.connect(address, office.key) as client:
        # even a filter naming the other office's e-mail receives nothing of it
        await client.subscribe("1", CHANGES, {"filter": {"emailIds": [theirs]}})
        await client.subscribe("2", CHANGES)
        await listening(app, 2)
        await record_via_api(address, other.key, theirs, "DELIVERED", "x")
        mine = await register_via_api(address, office.key, "mine")
        message = await client.receive()
        assert message["id"] == "2" and message["payload"]["data"]["emailStatusChanged"]["email"]["id"] == mine
        with pytest.raises(TimeoutError):
            await client.receive(timeout=0.5)


async def test_resuming_with_since_replays_what_was_missed_then_goes_live(live, office):  # type: ignore[no-untyped-def]
    address, app = live
    email_id = await register_via_api(address, office.key, "r-1")
    async with Client.connect(address, office.key) as client:
        await client.subscribe("1", CHANGES)
        await listening(app, 1)
        await record_via_api(address, office.key, email_id, "DELIVERED", "d")
        cursor = (await client.next_data("1"))["emailStatusChanged"]["cursor"]
    # missed while disconnected
    second = await register_via_api(address, office.key, "r-2")
    await record_via_api(address, office.key, email_id, "OPENED", "o", occurred_at="2026-11-03T10:00:00Z")
    async with Client.connect(address, office.key) as client:
        await client.subscribe("1", CHANGES, {"since": cursor})
        replayed = [(await client.next_data("1"))["emailStatusChanged"] for _ in range(2)]
        assert [(c["email"]["id"], c["status"]) for c in replayed] == [(second, "SENT"), (email_id, "OPENED")]
        await record_via_api(address, office.key, second, "DELIVERED", "d2")
        live_change = (await client.next_data("1"))["emailStatusChanged"]
        assert (live_change["email"]["id"], live_change["status"]) == (second, "DELIVERED")
        with pytest.raises(TimeoutError):
            await client.receive(timeout=0.5)


@pytest.mark.parametrize("since", ["garbage", encode_id("Email", 1)])
async def test_a_bad_cursor_gets_a_clear_error(live, office, since):  # type: ignore[no-untyped-def]
    address, _ = live
    async with Client.connect(address, office.key) as client:
        await client.subscribe("1", CHANGES, {"since": since})
        assert "Invalid cursor" in await expect_error(client, "1")


async def test_an_unknown_or_foreign_cursor_is_refused(live, office, session_factory):  # type: ignore[no-untyped-def]
    from gateway.ids import encode_position

    address, app = live
    other = await make_tenant(session_factory)
    theirs = await register_via_api(address, other.key, "t")
    async with Client.connect(address, other.key) as client:
        await client.subscribe("1", CHANGES)
        await listening(app, 1)
        await record_via_api(address, other.key, theirs, "DELIVERED", "d")
        foreign_cursor = (await client.next_data("1"))["emailStatusChanged"]["cursor"]
    async with Client.connect(address, office.key) as client:
        for op, cursor in (("a", foreign_cursor), ("b", encode_position((0, 999_999)))):
            await client.subscribe(op, CHANGES, {"since": cursor})
            assert "unknown or expired cursor" in await expect_error(client, op)


# Frames of about 150 KiB each (150 aliases of a 1,000-character subject): a burst of
# 40 is more than a socket's buffers hold on loopback (about 3 MiB) for a client
# that does not read.
HEAVY = (
    "subscription { emailStatusChanged { cursor status email { id "
    + " ".join(f"s{n}: subject" for n in range(150))
    + " } } }"
)
BURST = 40


async def _long_subjects(session_factory, tenant):  # type: ignore[no-untyped-def]
    from factories import register

    return [await register(session_factory, tenant, n=i, subject=f"{i} " + "x" * 990) for i in range(BURST)]


async def _burst(session_factory, emails, prefix: str) -> None:  # type: ignore[no-untyped-def]
    """One DELIVERED per e-mail, all in one transaction."""
    from gateway import ingest
    from gateway.enums import EmailStatus
    from gateway.events import IncomingEvent
    from gateway.models import utcnow

    async with session_factory() as session:
        events = [
            (e, IncomingEvent("api", f"{prefix}{e.id}", EmailStatus.DELIVERED, utcnow(), "burst")) for e in emails
        ]
        await ingest.apply_events(session=session, events=events)
        await session.commit()


async def _the_burst(client: Client, emails) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    """The burst's changes on operation "1": one per e-mail, then nothing more."""
    got = [(await client.next_data("1"))["emailStatusChanged"] for _ in range(BURST)]
    with pytest.raises(TimeoutError):
        await client.receive(timeout=0.5)
    assert sorted(c["email"]["id"] for c in got) == sorted(encode_id("Email", e.id) for e in emails)
    return got


@contextlib.asynccontextmanager
async def _heavy_server(backend, tmp_path, session_factory, queue_size):  # type: ignore[no-untyped-def]
    """A server keeping `queue_size` changes per subscriber, and a tenant with long subjects."""
    settings = make_settings(
        backend, tmp_path, purge_interval_seconds=0, subscriber_queue_size=queue_size, max_aliases=200
    )
    tenant = await make_tenant(session_factory)
    emails = await _long_subjects(session_factory, tenant)
    async with serving(settings) as (address, app):
        yield address, app, tenant, emails


@contextlib.asynccontextmanager
async def _not_reading(address: str, key: str, app):  # type: ignore[no-untyped-def]
    """A client subscribed to HEAVY that reads only when asked: a tiny receive buffer,
    one message read ahead."""
    import socket

    host, port = address.split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    async with Client.connect(address, key, sock=sock, max_queue=1, max_size=2**20) as client:
        await client.subscribe("1", HEAVY)
        await listening(app, 1)
        yield client


async def test_a_slow_subscriber_is_disconnected_and_resumes_without_loss(backend, tmp_path, session_factory):  # type: ignore[no-untyped-def]
    async with _heavy_server(backend, tmp_path, session_factory, 3) as (address, app, tenant, emails):
        # given: a client that stops reading
        async with _not_reading(address, tenant.key, app) as client:
            await register_via_api(address, tenant.key, "marker")
            marker = (await client.next_data("1"))["emailStatusChanged"]["cursor"]
            # when: the burst fills the socket's buffers, then more than the 3 changes
            # the server keeps waiting for it
            await _burst(session_factory, emails, "b")
            app.state.feed.poke()
            # then: the server closes the socket, saying to resume (after what it had sent)
            code, reason = await client.closed_with()
            assert code == 1013 and "since" in reason
        assert app.state.feed.listener_count == 0
        # and resuming from the last cursor received gets all of them, once each
        async with Client.connect(address, tenant.key) as client:
            await client.subscribe("1", CHANGES, {"since": marker})
            got = await _the_burst(client, emails)
        assert {c["status"] for c in got} == {"DELIVERED"}


async def test_a_client_that_falls_behind_and_catches_up_gets_everything_in_order(backend, tmp_path, session_factory):  # type: ignore[no-untyped-def]
    async with _heavy_server(backend, tmp_path, session_factory, 1000) as (address, app, tenant, emails):
        async with _not_reading(address, tenant.key, app) as client:
            # given: a burst larger than the socket's buffers, while the client reads nothing
            await _burst(session_factory, emails, "c")
            app.state.feed.poke()
            await asyncio.sleep(1.0)  # the server fills the buffers, then queues the rest
            # when: the client reads again
            # then: every change once, in the log's order, nothing more
            got = await _the_burst(client, emails)
        # The server's sends for this client waited for its socket: the feed handed
        # them to the subscription's own task (a send cancelled before it wrote: a
        # server whose send writes before it waits would show up here as duplicates).
        assert app.state.feed.stalls > 0
    positions = [decode_position(c["cursor"]) for c in got]
    assert positions == sorted(positions) and len(set(positions)) == BURST


async def test_a_subscriber_that_does_not_read_holds_nobody_else_back(backend, tmp_path, session_factory):  # type: ignore[no-untyped-def]
    async with _heavy_server(backend, tmp_path, session_factory, 1000) as (address, app, tenant, emails):
        # given: a client that reads nothing, and one that reads, on the same selection
        async with _not_reading(address, tenant.key, app) as stuck, Client.connect(address, tenant.key) as reader:
            await reader.subscribe("1", HEAVY)
            await listening(app, 2)
            # when: a burst larger than the stuck socket's buffers
            await _burst(session_factory, emails, "h")
            app.state.feed.poke()
            # then: the reader gets all of it while the other socket is still full
            got = await _the_burst(reader, emails)
            assert app.state.feed.stalls > 0
            assert {c["status"] for c in got} == {"DELIVERED"}
            # and the stuck one gets it too, in order, once it reads
            late = await _the_burst(stuck, emails)
        assert [c["cursor"] for c in late] == [c["cursor"] for c in got]


async def test_nothing_is_left_behind_after_many_connections(live, office):  # type: ignore[no-untyped-def]
    address, app = live
    feed, broker = app.state.feed, app.state.broker
    baseline = broker.subscriber_count
    for i in range(30):
        async with Client.connect(address, office.key) as client:
            await client.subscribe(str(i), CHANGES)
            await client.subscribe(f"{i}b", CHANGES, {"filter": {"statuses": ["OPENED"]}})
            async with asyncio.timeout(PATIENCE):
                while feed.listener_count < 2:
                    await asyncio.sleep(0.01)
        # the server notices the close and ends both subscriptions
        async with asyncio.timeout(PATIENCE):
            while feed.listener_count:
                await asyncio.sleep(0.01)
    assert broker.subscriber_count == baseline == 1  # the feed's own, whatever the subscribers


async def test_authentication_on_the_socket(live, office):  # type: ignore[no-untyped-def]
    address, _ = live
    async with Client.connect(address, None, init=False) as client:
        await client.send({"type": "connection_init", "payload": {}})
        assert (await client.closed_with())[0] == 4403
    async with Client.connect(address, None, init=False) as client:
        await client.send({"type": "connection_init", "payload": {"authorization": "Bearer gw_wrong"}})
        assert (await client.closed_with())[0] == 4403
    async with Client.connect(address, None, init=False) as client:
        await client.subscribe("1", CHANGES)
        assert (await client.closed_with())[0] == 4401
    async with Client.connect(address, None, init=False) as client:
        assert (await client.closed_with())[0] == 4408  # no connection_init in time
    async with Client.connect(address, office.read_key) as client:
        await client.subscribe("1", CHANGES)
        await client.subscribe("1", CHANGES)
        assert (await client.closed_with())[0] == 4409


async def test_garbage_closes_one_socket_and_the_server_goes_on(live, office):  # type: ignore[no-untyped-def]
    address, _ = live
    for garbage in ("{not json", json.dumps({"type": "what"}), json.dumps([1, 2]), json.dumps({"type": "subscribe"})):
        async with Client.connect(address, office.key) as client:
            await client.ws.send(garbage)
            assert (await client.closed_with())[0] == 4400
    async with Client.connect(address, office.key) as client:
        await client.subscribe("1", "subscription { nope }")
        assert "nope" in await expect_error(client, "1")
        await client.subscribe("2", "subscription { emailStatusChanged(filter: {statuses: [BOUNCED]}) { cursor } }")
        assert "BOUNCED" in await expect_error(client, "2")
    async with Client.connect(address, office.key, max_size=None) as client:
        await client.ws.send("x" * (300 * 1024))
        assert (await client.closed_with())[0] == 1009  # message too big
    async with Client.connect(address, office.key) as client:  # still serving everyone else
        await client.subscribe("ok", CHANGES)
        email_id = await register_via_api(address, office.key, "after-garbage")
        assert (await client.next_data("ok"))["emailStatusChanged"]["email"]["id"] == email_id


async def test_the_legacy_protocol_is_off_unless_asked_for(backend, tmp_path, session_factory):  # type: ignore[no-untyped-def]
    tenant = await make_tenant(session_factory)
    for enabled in (False, True):
        async with serving(make_settings(backend, tmp_path, purge_interval_seconds=0, legacy_ws=enabled)) as (
            address,
            _,
        ):
            try:
                async with websockets.connect(f"ws://{address}/graphql", subprotocols=["graphql-ws"]) as ws:  # type: ignore[list-item]
                    await ws.send(
                        json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {tenant.key}"}})
                    )
                    raw = await asyncio.wait_for(ws.recv(), PATIENCE)
                    assert isinstance(raw, str), "text frames, as browsers' clients expect"
                    accepted = json.loads(raw)["type"] == "connection_ack"
            except (websockets.InvalidStatus, websockets.ConnectionClosed, websockets.InvalidHandshake):
                accepted = False
            assert accepted is enabled


async def test_a_change_reaches_many_listeners_once_even_when_fanned_out_in_chunks(live, office):  # type: ignore[no-untyped-def]
    # given: more listeners than the feed wakes per turn of the event loop
    from gateway.live import _WAKE_CHUNK

    address, app = live
    feed = app.state.feed
    count = 2 * _WAKE_CHUNK + 17
    async with contextlib.AsyncExitStack() as stack:
        listeners = [await stack.enter_async_context(feed.listen(office.id)) for _ in range(count)]
        # when: two changes
        email_id = await register_via_api(address, office.key, "many", relation={"externalId": "r", "name": "R"})
        await record_via_api(address, office.key, email_id, "DELIVERED", "many-d")
        feed.poke()
        # then: every listener gets both, in order, and nothing else
        async with asyncio.timeout(PATIENCE):
            for listener in listeners:
                first, second = await listener.__anext__(), await listener.__anext__()
                assert (first.change.status, second.change.status) == ("SENT", "DELIVERED")
                assert first.position < second.position
        assert all(not li.pending for li in listeners)
