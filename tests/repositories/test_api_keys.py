# mypy: disable-error-code="no-untyped-def"
"""API keys: named by their prefix, revoked, rotated with a grace period; the
authenticator's cache bounds, and the last use written in the background."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from factories import make_tenant
from sqlalchemy import update

from gateway import models
from gateway.auth import LAST_USE_PRECISION, Authenticator
from gateway.errors import Conflict, NotFound
from gateway.repositories.api_keys import (
    find_live_key,
    get_api_key_by_prefix,
    list_api_keys,
    revoke_api_key,
    rotate_api_key,
)

GRACE = timedelta(hours=2)
EMAILS = "query Emails($first: Int) { emails(first: $first) { totalCount } }"


async def _rotate(factory, raw_key: str, *, grace: timedelta, now=None):
    """Rotate the key `raw_key` (named by its prefix); the new row and raw key."""
    async with factory() as session:
        old = await get_api_key_by_prefix(session=session, prefix=raw_key[:10])
        new, raw = await rotate_api_key(session=session, key=old, grace=grace, now=now or models.utcnow())
        await session.commit()
        return new, raw


async def _revoke(factory, raw_key: str) -> bool:
    async with factory() as session:
        key = await get_api_key_by_prefix(session=session, prefix=raw_key[:10])
        revoked = await revoke_api_key(session=session, key=key, now=models.utcnow())
        await session.commit()
        return revoked


async def _stored(factory, raw_key: str) -> models.ApiKey:
    async with factory() as session:
        return await get_api_key_by_prefix(session=session, prefix=raw_key[:10])


async def _live(factory, raw_key: str, at):  # type: ignore[no-untyped-def]
    async with factory() as session:
        grant = await find_live_key(session=session, raw_key=raw_key, now=at)
        return grant.principal if grant is not None else None


# --- the repository ---------------------------------------------------------------------------


async def test_a_rotated_key_works_beside_its_successor_until_the_grace_period_ends(session_factory):
    # given
    tenant = await make_tenant(session_factory)
    now = models.utcnow()
    # when
    _, new_key = await _rotate(session_factory, tenant.read_key, grace=GRACE, now=now)
    # then: the same tenant and scopes, both keys up to the end of the grace period, then the new one
    assert await _live(session_factory, new_key, now) == tenant.read_principal
    assert await _live(session_factory, tenant.read_key, now) == tenant.read_principal
    just_before = now + GRACE - timedelta(seconds=1)
    assert await _live(session_factory, tenant.read_key, just_before) == tenant.read_principal
    assert await _live(session_factory, tenant.read_key, now + GRACE) is None
    assert await _live(session_factory, new_key, now + GRACE) == tenant.read_principal
    assert (await _stored(session_factory, tenant.read_key)).expires_at == now + GRACE


async def test_a_second_rotation_keeps_the_earlier_expiry_and_a_dead_key_is_not_rotated(session_factory):
    # given: a key rotated with a two-hour grace period, and a revoked key
    tenant = await make_tenant(session_factory)
    now = models.utcnow()
    await _rotate(session_factory, tenant.key, grace=GRACE, now=now)
    await _revoke(session_factory, tenant.read_key)
    # when
    await _rotate(session_factory, tenant.key, grace=GRACE * 10, now=now)
    # then
    assert (await _stored(session_factory, tenant.key)).expires_at == now + GRACE
    with pytest.raises(Conflict, match="expired"):
        await _rotate(session_factory, tenant.key, grace=GRACE, now=now + GRACE)
    with pytest.raises(Conflict, match="revoked"):
        await _rotate(session_factory, tenant.read_key, grace=GRACE, now=now)


async def test_a_key_is_named_by_its_prefix_and_an_unknown_or_shared_one_is_refused(session_factory):
    # given: a key, and another row with the same prefix (as keys made before prefixes were unique)
    tenant = await make_tenant(session_factory)
    shared = tenant.read_key[:10]
    async with session_factory() as session:
        session.add(models.ApiKey(tenant_id=tenant.id, prefix=shared, key_hash="0" * 64, scopes="read"))
        await session.commit()
    # when
    async with session_factory() as session:
        printed = await get_api_key_by_prefix(session=session, prefix=f"{tenant.key[:10]}...")
        with pytest.raises(NotFound, match="gw_nothing"):
            await get_api_key_by_prefix(session=session, prefix="gw_nothing")
        with pytest.raises(Conflict, match=shared):
            await get_api_key_by_prefix(session=session, prefix=shared)
    # then
    assert printed.prefix == tenant.key[:10]
    assert printed.tenant_id == tenant.id


async def test_a_key_is_revoked_once(session_factory):
    # given
    tenant = await make_tenant(session_factory)
    # when
    first = await _revoke(session_factory, tenant.key)
    revoked_at = (await _stored(session_factory, tenant.key)).revoked_at
    second = await _revoke(session_factory, tenant.key)
    # then
    assert (first, second) == (True, False)
    assert revoked_at is not None
    assert (await _stored(session_factory, tenant.key)).revoked_at == revoked_at
    assert await _live(session_factory, tenant.key, models.utcnow()) is None
    assert await _live(session_factory, tenant.read_key, models.utcnow()) == tenant.read_principal


async def test_keys_are_listed_by_tenant_name_then_age(session_factory):
    # given
    garage = await make_tenant(session_factory, "Garage Jansen")
    bakery = await make_tenant(session_factory, "Bakkerij Smit")
    # when
    async with session_factory() as session:
        every = await list_api_keys(session=session)
        one = await list_api_keys(session=session, tenant_id=garage.id)
    # then
    listed = [(key.prefix, tenant) for key, tenant in every]
    assert listed == [
        (bakery.key[:10], "Bakkerij Smit"),
        (bakery.read_key[:10], "Bakkerij Smit"),
        (garage.key[:10], "Garage Jansen"),
        (garage.read_key[:10], "Garage Jansen"),
    ]
    assert [(key.prefix, key.scopes) for key, _ in one] == [
        (garage.key[:10], "read,write"),
        (garage.read_key[:10], "read"),
    ]


# --- over HTTP --------------------------------------------------------------------------------


async def test_revoked_and_expired_keys_answer_401_like_an_unknown_one(client, session_factory):
    # given: a revoked key, and a key rotated without a grace period
    tenant = await make_tenant(session_factory)
    await _revoke(session_factory, tenant.read_key)
    _, successor = await _rotate(session_factory, tenant.key, grace=timedelta(0))
    unknown = "gw_" + "x" * 43
    # when
    answers = [
        await client.post(
            "/graphql",
            json={"query": EMAILS, "variables": {"first": 1}},
            headers={"Authorization": f"Bearer {key}"},
        )
        for key in (tenant.read_key, tenant.key, unknown, successor)
    ]
    # then
    revoked, expired, not_a_key, new = answers
    assert revoked.status_code == expired.status_code == not_a_key.status_code == 401
    assert revoked.json() == expired.json() == not_a_key.json()
    assert new.status_code == 200
    assert new.json() == {"data": {"emails": {"totalCount": 0}}}


# --- the authenticator's cache ----------------------------------------------------------------


async def test_the_cache_refuses_a_key_at_its_expiry_exactly(session_factory):
    # given: a key that expires in a second, found once by an authenticator that caches for an hour
    tenant = await make_tenant(session_factory)
    await _rotate(session_factory, tenant.key, grace=timedelta(seconds=1))
    expires_at = (await _stored(session_factory, tenant.key)).expires_at
    authenticate = Authenticator(session_factory, ttl=3600)
    before = await authenticate(f"Bearer {tenant.key}")
    # when: the expiry passes (the wait is what is tested: a clock, no event to await)
    await asyncio.sleep((expires_at - models.utcnow()).total_seconds() + 0.05)
    after = await authenticate(f"Bearer {tenant.key}")
    # then
    assert before == tenant.principal
    assert after is None
    await authenticate.aclose()


async def test_a_revoked_key_is_refused_once_the_cache_period_is_over(session_factory):
    # given: a key found by an authenticator that caches for 0.3 s
    tenant = await make_tenant(session_factory)
    authenticate = Authenticator(session_factory, ttl=0.3)
    assert await authenticate(f"Bearer {tenant.key}") == tenant.principal
    # when
    await _revoke(session_factory, tenant.key)
    within = await authenticate(f"Bearer {tenant.key}")
    await asyncio.sleep(0.35)  # the cache period passing is what is tested: no event to await
    after = await authenticate(f"Bearer {tenant.key}")
    # then: the documented bound, no more
    assert within == tenant.principal
    assert after is None
    await authenticate.aclose()


# --- last use ---------------------------------------------------------------------------------


async def _last_used(factory, raw_key: str):  # type: ignore[no-untyped-def]
    return (await _stored(factory, raw_key)).last_used_at


def _updates(counter) -> list[str]:  # type: ignore[no-untyped-def]
    return [s for s in counter.statements if s.lstrip().upper().startswith("UPDATE")]


async def test_the_last_use_is_written_once_per_period(session_factory, count_statements):
    # given: an authenticator without a cache, so that every request looks the key up
    tenant = await make_tenant(session_factory)
    authenticate = Authenticator(session_factory, ttl=0)
    started = models.utcnow()
    # when: many requests, here and in a second process
    with count_statements:
        for _ in range(5):
            assert await authenticate(f"Bearer {tenant.key}") == tenant.principal
        await authenticate.aclose()
        first = await _last_used(session_factory, tenant.key)
        other_process = Authenticator(session_factory, ttl=0)
        assert await other_process(f"Bearer {tenant.key}") == tenant.principal
        await other_process.aclose()
    # then: one write; the other process sees the stored use and writes nothing
    assert first is not None
    assert started <= first <= models.utcnow()
    assert len(_updates(count_statements)) == 1
    assert await _last_used(session_factory, tenant.key) == first
    assert await _last_used(session_factory, tenant.read_key) is None

    # given: the period is over
    async with session_factory() as session:
        await session.execute(
            update(models.ApiKey)
            .where(models.ApiKey.prefix == tenant.key[:10])
            .values(last_used_at=first - LAST_USE_PRECISION)
        )
        await session.commit()
    # when
    assert await other_process(f"Bearer {tenant.key}") == tenant.principal
    await other_process.aclose()
    # then
    assert await _last_used(session_factory, tenant.key) > first


async def test_a_blocked_last_use_write_delays_no_request(session_factory):
    # given: another transaction holds the key's row (SQLite: the database) for writing
    tenant = await make_tenant(session_factory)
    authenticate = Authenticator(session_factory, ttl=0)
    async with session_factory() as blocker:
        await blocker.execute(
            update(models.ApiKey).where(models.ApiKey.prefix == tenant.key[:10]).values(scopes=models.ApiKey.scopes)
        )
        # when
        principal = await asyncio.wait_for(authenticate(f"Bearer {tenant.key}"), timeout=2)
        while_blocked = await _last_used(session_factory, tenant.key)
        await blocker.rollback()
    await authenticate.aclose()
    # then: the request was answered; the write went through once the row was free
    assert principal == tenant.principal
    assert while_blocked is None
    assert await _last_used(session_factory, tenant.key) is not None
