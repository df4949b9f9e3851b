"""No gap and no duplicate under concurrent writers, broker outages and several processes."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime

import httpx
import pytest
from conftest import IN_CI, PG_HOST, PG_PORT, _pg_admin, make_settings, need_server
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from factories import event, make_tenant, register
from live_helpers import CHANGES, PATIENCE, Client, free_port, gql, listening, record_via_api, register_via_api, serving
from sqlalchemy import select

from gateway import ingest, models
from gateway.enums import EmailStatus
from gateway.ids import decode_position
from gateway.repositories.changes import list_changes_after


async def test_a_change_committed_late_is_never_skipped(backend, session_factory):  # type: ignore[no-untyped-def]
    """The classic trap: id 41 commits after id 42 was read. The reader must wait for 41."""
    if not backend.startswith("postgresql"):
        pytest.skip("SQLite serializes writers: a later id can never commit first")
    tenant = await make_tenant(session_factory)
    slow_email, fast_email = await register(session_factory, tenant), await register(session_factory, tenant)
    async with session_factory() as reader:
        logged = (await reader.execute(select(models.StatusChange.txid, models.StatusChange.id))).all()
    start = max((int(t), int(i)) for t, i in logged)  # the registrations, committed
    # given: a slow writer takes the lower id and does not commit yet
    slow = session_factory()
    slow_changes = await ingest.apply_events(
        session=slow, events=[(slow_email, event(EmailStatus.DELIVERED, datetime.now(UTC)))]
    )
    # and a fast writer takes the higher id and commits
    async with session_factory() as fast:
        fast_changes = await ingest.apply_events(
            session=fast, events=[(fast_email, event(EmailStatus.DELIVERED, datetime.now(UTC)))]
        )
        await fast.commit()
    assert slow_changes[0].position[1] < fast_changes[0].position[1]
    # when: a reader looks while the slow one is in flight
    async with session_factory() as reader:
        seen_early = await list_changes_after(session=reader, after=start, limit=100)
    # then: it sees neither (a naive `id > cursor` reader would see 42 and later skip 41)
    assert seen_early == []
    await slow.commit()
    await slow.close()
    # once both are committed they become readable together, in commit-safe order
    # (other writers on the same server may hold the watermark back a little longer)
    async with asyncio.timeout(PATIENCE):
        while True:
            async with session_factory() as reader:
                seen = await list_changes_after(session=reader, after=start, limit=100)
            if seen:
                break
            await asyncio.sleep(0.05)
    assert [c.id for c, _ in seen] == [slow_changes[0].position[1], fast_changes[0].position[1]]


async def test_concurrent_writers_and_a_resuming_subscriber_see_every_change_once(backend, tmp_path, session_factory):  # type: ignore[no-untyped-def]
    # given: a live gateway and a subscriber that keeps disconnecting and resuming
    rng = random.Random(7)  # noqa: S311
    writers, per_writer = (6, 12) if backend.startswith("postgresql") else (3, 8)
    tenant = await make_tenant(session_factory)
    emails = [await register(session_factory, tenant, n=i) for i in range(writers * per_writer)]
    settings = make_settings(backend, tmp_path, purge_interval_seconds=0, feed_poll_seconds=0.2)
    async with serving(settings) as (address, app):
        marker_id = await register_via_api(address, tenant.key, "marker")
        async with session_factory() as session:
            marker = (
                await session.execute(select(models.StatusChange).order_by(models.StatusChange.id.desc()).limit(1))
            ).scalar_one()
        from gateway.ids import encode_position

        cursor = encode_position((marker.txid, marker.id))
        assert marker.email_id != 0 and marker_id

        async def write(batch: list[models.Email]) -> None:
            for email in batch:
                async with session_factory() as session:
                    changes = await ingest.apply_events(
                        session=session, events=[(email, event(EmailStatus.DELIVERED, datetime.now(UTC)))]
                    )
                    await asyncio.sleep(rng.random() * 0.02)  # hold the transaction open: commits interleave
                    await session.commit()
                await ingest.publish_changes(app.state.broker, changes)

        received: list[str] = []

        async def subscribe_and_resume() -> None:
            nonlocal cursor
            while True:
                async with Client.connect(address, tenant.key) as client:
                    await client.subscribe("1", CHANGES, {"since": cursor})
                    deadline = time.monotonic() + rng.random() * 0.3
                    while time.monotonic() < deadline:
                        try:
                            data = await client.next_data("1", timeout=max(0.01, deadline - time.monotonic()))
                        except TimeoutError:
                            break
                        change = data["emailStatusChanged"]
                        received.append(change["cursor"])
                        cursor = change["cursor"]

        reader = asyncio.create_task(subscribe_and_resume())
        chunks = [emails[i::writers] for i in range(writers)]
        await asyncio.gather(*(write(chunk) for chunk in chunks))
        # then: every change written after the marker arrives exactly once
        async with session_factory() as session:
            expected = {
                (c.txid, c.id)
                for c in (
                    await session.execute(select(models.StatusChange).where(models.StatusChange.id > marker.id))
                ).scalars()
            }
        assert len(expected) == writers * per_writer
        async with asyncio.timeout(PATIENCE * 2):
            while len(received) < len(expected):
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
    positions = [decode_position(c) for c in received]
    assert len(positions) == len(set(positions)), "a change was delivered twice"
    assert set(positions) == expected, "a change was lost"
    assert positions == sorted(positions), "changes arrived out of position order"


async def test_a_subscriber_arriving_while_the_idle_feed_moves_on_misses_nothing(
    backend, tmp_path, session_factory, monkeypatch
):  # type: ignore[no-untyped-def]
    # given: a feed with nobody listening, caught inside its "move on to the newest
    # change" query (the real query, held at a gate)
    import gateway.live
    from gateway.ids import encode_position

    tenant = await make_tenant(session_factory)
    first, second = await register(session_factory, tenant, n=1), await register(session_factory, tenant, n=2)
    settings = make_settings(backend, tmp_path, purge_interval_seconds=0, feed_poll_seconds=60)

    async def commit(email):  # type: ignore[no-untyped-def]
        async with session_factory() as session:
            changes = await ingest.apply_events(
                session=session, events=[(email, event(EmailStatus.DELIVERED, datetime.now(UTC)))]
            )
            await session.commit()
        return changes[0]

    async with serving(settings) as (address, app):
        marker = await commit(first)  # not announced: the feed reads it when poked
        real, entered, gate = gateway.live.latest_position, asyncio.Event(), asyncio.Event()

        async def held(*, session):  # type: ignore[no-untyped-def]
            entered.set()
            await gate.wait()
            return await real(session=session)

        monkeypatch.setattr(gateway.live, "latest_position", held)
        app.state.feed.poke()
        await asyncio.wait_for(entered.wait(), PATIENCE)
        async with Client.connect(address, tenant.key) as client:
            # when: a subscriber resumes meanwhile, and a change commits after its replay
            await client.subscribe("1", CHANGES, {"since": encode_position(marker.position)})
            await listening(app, 1)
            later = await commit(second)
            gate.set()
            app.state.feed.poke()
            # then: that change still reaches it
            got = (await client.next_data("1", timeout=5))["emailStatusChanged"]
            assert decode_position(got["cursor"]) == later.position


async def _redis_server():  # type: ignore[no-untyped-def]
    from test_pubsub import _RedisServer

    binary = shutil.which("redis-server")
    if binary is None:
        if IN_CI:
            pytest.fail("redis-server is not installed (CI=true)")
        pytest.skip("redis-server is not installed")
    server = _RedisServer(binary, free_port())
    await server.start()
    return server


async def test_a_redis_outage_loses_nothing(backend, tmp_path, session_factory):  # type: ignore[no-untyped-def]
    # given: a gateway whose broker is a Redis we can stop
    redis = await _redis_server()
    tenant = await make_tenant(session_factory)
    settings = make_settings(backend, tmp_path, purge_interval_seconds=0, broker_url=redis.url, feed_poll_seconds=0.5)
    try:
        async with serving(settings) as (address, app):
            email_id = await register_via_api(address, tenant.key, "outage")
            async with Client.connect(address, tenant.key) as client:
                await client.subscribe("1", CHANGES)
                await listening(app, 1)
                # when: Redis goes away
                await redis.kill()
                async with httpx.AsyncClient(base_url=f"http://{address}") as http:
                    async with asyncio.timeout(PATIENCE):
                        while (await http.get("/readyz")).status_code != 503:
                            await asyncio.sleep(0.1)
                    assert (await http.get("/readyz")).json()["broker"] == "unreachable"
                # then: writes and reads still work, and the subscriber still gets the change
                await record_via_api(address, tenant.key, email_id, "DELIVERED", "during-outage")
                data = await gql(
                    address, tenant.key, "query($id: ID!) { email(id: $id) { emailStatus } }", {"id": email_id}
                )
                assert data["email"]["emailStatus"] == "DELIVERED"
                change = (await client.next_data("1"))["emailStatusChanged"]
                assert change["status"] == "DELIVERED"
                # and when Redis is back, announcements flow again
                await redis.start()
                async with httpx.AsyncClient(base_url=f"http://{address}") as http:
                    async with asyncio.timeout(PATIENCE * 2):
                        while (await http.get("/readyz")).status_code != 200:
                            await asyncio.sleep(0.1)
                await record_via_api(
                    address, tenant.key, email_id, "OPENED", "after-outage", occurred_at="2026-11-02T10:00:00Z"
                )
                change = (await client.next_data("1"))["emailStatusChanged"]
                assert change["status"] == "OPENED"
                with pytest.raises(TimeoutError):
                    await client.receive(timeout=0.5)
    finally:
        await redis.kill()


def _sendgrid_keys() -> tuple[ec.EllipticCurvePrivateKey, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, base64.b64encode(der).decode()


def _signed_sendgrid(key: ec.EllipticCurvePrivateKey, events: list[dict[str, object]]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(events).encode()
    timestamp = str(int(time.time()))
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return body, {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        "Content-Type": "application/json",
    }


async def test_two_gateway_processes_share_one_stream(tmp_path):  # type: ignore[no-untyped-def]
    """Scale-out: subscribed on process A, ingested through a webhook on process B."""
    need_server("PostgreSQL", PG_HOST, PG_PORT)
    need_server("Redis", "127.0.0.1", 6379)
    database = f"gateway_scale_{os.getpid()}"
    await _pg_admin(f'DROP DATABASE IF EXISTS "{database}"')
    await _pg_admin(f'CREATE DATABASE "{database}"')
    key, public = _sendgrid_keys()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")},
        "GATEWAY_DATABASE_URL": f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{database}",
        "GATEWAY_DATA_DIR": str(tmp_path / "data"),
        "GATEWAY_SECRET_KEY": "scale-out-test-secret-key-0123456789-abcdef",
        "GATEWAY_BROKER_URL": "redis://127.0.0.1:6379/0",
        "GATEWAY_SENDGRID_VERIFICATION_KEY": public,
        "GATEWAY_PURGE_INTERVAL_SECONDS": "0",
        "GATEWAY_FEED_POLL_SECONDS": "30",  # so that only the broker can deliver within the test
    }
    gateway = [sys.executable, "-m", "gateway.cli"]
    subprocess.run([*gateway, "migrate"], env=env, check=True, capture_output=True, cwd=tmp_path)  # noqa: S603
    created = subprocess.run(
        [*gateway, "create-api-key", "--tenant", "Scale"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )  # noqa: S603
    api_key = created.stdout.strip().splitlines()[-1]
    ports = [free_port(), free_port()]
    log = (tmp_path / "servers.log").open("wb")
    servers = [
        subprocess.Popen([*gateway, "serve", "--port", str(p)], env=env, cwd=tmp_path, stdout=log, stderr=log)  # noqa: S603
        for p in ports
    ]
    try:
        async with httpx.AsyncClient() as http:
            for port in ports:
                async with asyncio.timeout(PATIENCE * 2):
                    while True:
                        try:
                            if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                                break
                        except httpx.TransportError:
                            pass
                        await asyncio.sleep(0.1)
        a, b = (f"127.0.0.1:{p}" for p in ports)
        email_id = await register_via_api(b, api_key, "scale-1", providerMessageId="scale-msg-1")
        async with Client.connect(a, api_key) as client:
            await client.subscribe("1", CHANGES)
            # the subscription is live once a change made on B reaches it through A
            marker = await register_via_api(b, api_key, "scale-marker")
            while (await client.next_data("1"))["emailStatusChanged"]["email"]["id"] != marker:
                pass
            body, headers = _signed_sendgrid(
                key,
                [
                    {
                        "email": "a@example.com",
                        "timestamp": int(time.time()),
                        "event": "delivered",
                        "sg_event_id": "scale-ev-1",
                        "sg_message_id": "scale-msg-1.filter0001.1.2.0",
                        "response": "250 OK",
                    }
                ],
            )
            sent = time.monotonic()
            async with httpx.AsyncClient() as http:
                answer = await http.post(f"http://{b}/webhooks/sendgrid", content=body, headers=headers)
            assert answer.status_code == 200 and answer.json()["applied"] == 1
            change = (await client.next_data("1"))["emailStatusChanged"]
            latency = time.monotonic() - sent
            assert (change["email"]["id"], change["status"]) == (email_id, "DELIVERED")
            with pytest.raises(TimeoutError):
                await client.receive(timeout=1.0)  # exactly once
            print(f"scale-out delivery: {latency * 1000:.0f} ms from webhook to subscriber")  # noqa: T201
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            try:
                server.wait(timeout=PATIENCE)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        log.close()
        await _pg_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


async def test_a_long_transaction_in_another_database_does_not_hold_changes_back(backend, session_factory):  # type: ignore[no-untyped-def]
    """The watermark counts this database's writers only (a shared server is common)."""
    if not backend.startswith("postgresql"):
        pytest.skip("SQLite has no other databases on its server")
    import asyncpg

    other = f"gateway_other_{os.getpid()}"
    await _pg_admin(f'DROP DATABASE IF EXISTS "{other}"')
    await _pg_admin(f'CREATE DATABASE "{other}"')
    stranger = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user="postgres", database=other)
    try:
        # given: another application's writing transaction, open and older than ours
        transaction = stranger.transaction()
        await transaction.start()
        await stranger.fetchval("SELECT pg_current_xact_id()")
        tenant = await make_tenant(session_factory)
        # when: we commit a change
        email = await register(session_factory, tenant)
        # then: readers see it at once
        async with session_factory() as reader:
            seen = await list_changes_after(session=reader, after=(0, 0), limit=100)
        assert email.id in {c.email_id for c, _ in seen}
        await transaction.rollback()
    finally:
        await stranger.close()
        await _pg_admin(f'DROP DATABASE IF EXISTS "{other}" WITH (FORCE)')
