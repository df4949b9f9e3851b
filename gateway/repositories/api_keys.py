"""Tenants and their API keys. Keys are random 256-bit secrets; only a SHA-256 is kept.

A key is live while it is not revoked and its expiry (if any) has not come.
Operators name a key by its public prefix, the first characters of the key.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from gateway import models
from gateway.enums import Scope
from gateway.errors import Conflict, NotFound

__all__ = [
    "KeyGrant",
    "Principal",
    "create_api_key",
    "find_live_key",
    "get_api_key_by_prefix",
    "get_or_create_tenant",
    "get_principal",
    "get_tenant_by_name",
    "hash_key",
    "list_api_keys",
    "record_key_uses",
    "revoke_api_key",
    "rotate_api_key",
]

_KEY_PREFIX = "gw_"
# How many leading characters of a key are stored and shown to tell keys apart.
PREFIX_LENGTH = 10


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a tenant and what the key may do."""

    tenant_id: int
    scopes: frozenset[Scope]

    def can(self, scope: Scope) -> bool:
        return scope in self.scopes


def hash_key(raw_key: str) -> str:
    # A plain SHA-256 is enough: the key has 256 bits of entropy, so there is
    # nothing for a slow password hash to protect against, and lookups stay O(1).
    return hashlib.sha256(raw_key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class KeyGrant:
    """A live key as the authenticator needs it: who it is, and until when it is valid."""

    key_id: int
    principal: Principal
    expires_at: datetime | None
    last_used_at: datetime | None

    def valid_at(self, now: datetime) -> bool:
        return self.expires_at is None or now < self.expires_at


def _scopes(value: str) -> frozenset[Scope]:
    return frozenset(Scope(s) for s in value.split(",") if s)


async def get_or_create_tenant(*, session: AsyncSession, name: str) -> models.Tenant:
    """The tenant called `name`, created when new (the caller commits)."""
    tenant = await get_tenant_by_name(session=session, name=name)
    if tenant is None:
        tenant = models.Tenant(name=name)
        session.add(tenant)
        await session.flush()
    return tenant


async def get_tenant_by_name(*, session: AsyncSession, name: str) -> models.Tenant | None:
    """The tenant called exactly `name`, or None."""
    return (await session.execute(select(models.Tenant).where(col(models.Tenant.name) == name))).scalar_one_or_none()


async def create_api_key(
    *,
    session: AsyncSession,
    tenant_id: int,
    scopes: frozenset[Scope],
) -> tuple[models.ApiKey, str]:
    """A new key for the tenant: the stored row and the raw key, shown once and never kept.

    Its prefix is one no other key has, so that the prefix alone names it.
    """
    while True:
        raw = _KEY_PREFIX + secrets.token_urlsafe(32)
        taken = await session.execute(
            select(col(models.ApiKey.id)).where(col(models.ApiKey.prefix) == raw[:PREFIX_LENGTH]).limit(1)
        )
        if taken.first() is None:
            break
    key = models.ApiKey(
        tenant_id=tenant_id,
        prefix=raw[:PREFIX_LENGTH],
        key_hash=hash_key(raw),
        scopes=",".join(sorted(s.value for s in scopes)),
    )
    session.add(key)
    await session.flush()
    return key, raw


async def find_live_key(*, session: AsyncSession, raw_key: str, now: datetime) -> KeyGrant | None:
    """The grant of a key that is live at `now`; None for an unknown, revoked or expired key."""
    if not raw_key.startswith(_KEY_PREFIX) or len(raw_key) > 200:
        return None
    key = models.ApiKey
    row = (
        await session.execute(
            select(col(key.id), col(key.tenant_id), col(key.scopes), col(key.expires_at), col(key.last_used_at)).where(
                col(key.key_hash) == hash_key(raw_key),
                col(key.revoked_at).is_(None),
                or_(col(key.expires_at).is_(None), col(key.expires_at) > now),
            )
        )
    ).first()
    if row is None:
        return None
    return KeyGrant(
        key_id=row.id,
        principal=Principal(tenant_id=row.tenant_id, scopes=_scopes(row.scopes)),
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
    )


async def get_principal(*, session: AsyncSession, raw_key: str) -> Principal | None:
    """The tenant and scopes of a live key, or None for an unknown, revoked or expired key."""
    grant = await find_live_key(session=session, raw_key=raw_key, now=models.utcnow())
    return grant.principal if grant is not None else None


async def record_key_uses(*, session: AsyncSession, uses: Mapping[int, datetime], precision: timedelta) -> None:
    """Set each key's last use (key id -> time) unless a use within `precision` is stored.

    The condition is in the statement, so processes that race write a key once,
    and a late write never moves a last use back. The caller commits.
    """
    if not uses:
        return
    table = models.table_of(models.ApiKey)
    statement = (
        table.update()
        .where(
            table.c.id == bindparam("key_id"),
            or_(table.c.last_used_at.is_(None), table.c.last_used_at <= bindparam("stale_before")),
        )
        .values(last_used_at=bindparam("used_at"))
    )
    await session.execute(
        statement,
        [
            {"key_id": key_id, "used_at": at, "stale_before": at - precision}
            for key_id, at in sorted(uses.items())  # in key order: concurrent writers never deadlock
        ],
    )


async def list_api_keys(*, session: AsyncSession, tenant_id: int | None = None) -> list[tuple[models.ApiKey, str]]:
    """Every key (or the tenant's) with its tenant's name, by tenant name then age."""
    query = (
        select(models.ApiKey, col(models.Tenant.name))
        .join(models.Tenant, col(models.Tenant.id) == col(models.ApiKey.tenant_id))
        .order_by(col(models.Tenant.name), col(models.ApiKey.created_at), col(models.ApiKey.id))
    )
    if tenant_id is not None:
        query = query.where(col(models.ApiKey.tenant_id) == tenant_id)
    return [(key, name) for key, name in await session.execute(query)]


async def get_api_key_by_prefix(*, session: AsyncSession, prefix: str) -> models.ApiKey:
    """The one key whose public prefix is `prefix` (as printed, "..." allowed at the end).

    Raises NotFound when no key has it and Conflict when several do (keys made
    before prefixes were kept unique can share one).
    """
    wanted = prefix.strip().removesuffix("...")
    keys = list(
        (await session.execute(select(models.ApiKey).where(col(models.ApiKey.prefix) == wanted).limit(2))).scalars()
    )
    if not keys:
        raise NotFound(f"no API key has the prefix {wanted!r}")
    if len(keys) > 1:
        raise Conflict(f"the prefix {wanted!r} names more than one API key; refusing to choose")
    return keys[0]


async def revoke_api_key(*, session: AsyncSession, key: models.ApiKey, now: datetime) -> bool:
    """Revoke the key from `now` on; False when it already was (the first time stays)."""
    if key.revoked_at is not None:
        return False
    key.revoked_at = now
    session.add(key)
    await session.flush()
    return True


async def rotate_api_key(
    *, session: AsyncSession, key: models.ApiKey, grace: timedelta, now: datetime
) -> tuple[models.ApiKey, str]:
    """A new key for the same tenant and scopes; the old one expires after `grace`.

    Both keys work during the grace period, so clients can switch without a gap.
    An old key that already expires sooner keeps its earlier expiry. Raises
    Conflict for a key that is revoked or expired: there is nothing to hand over.
    """
    if key.revoked_at is not None:
        raise Conflict(f"the API key {key.prefix}... is revoked; create a new key instead")
    if key.expires_at is not None and key.expires_at <= now:
        raise Conflict(f"the API key {key.prefix}... has expired; create a new key instead")
    new_key, raw = await create_api_key(session=session, tenant_id=key.tenant_id, scopes=_scopes(key.scopes))
    ends = now + grace
    key.expires_at = ends if key.expires_at is None else min(key.expires_at, ends)
    session.add(key)
    await session.flush()
    return new_key, raw
