"""Tenants and their API keys. Keys are random 256-bit secrets; only a SHA-256 is kept."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway import models
from gateway.enums import Scope

__all__ = ["Principal", "create_api_key", "get_or_create_tenant", "get_principal", "hash_key"]

_KEY_PREFIX = "gw_"


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


async def get_or_create_tenant(*, session: AsyncSession, name: str) -> models.Tenant:
    """The tenant called `name`, created when new (the caller commits)."""
    tenant = (
        await session.execute(select(models.Tenant).where(models.Tenant.name == name))
    ).scalar_one_or_none()
    if tenant is None:
        tenant = models.Tenant(name=name)
        session.add(tenant)
        await session.flush()
    return tenant


async def create_api_key(
    *, session: AsyncSession, tenant_id: int, scopes: frozenset[Scope]
) -> tuple[models.ApiKey, str]:
    """A new key for the tenant: the stored row and the raw key, shown once and never kept."""
    raw = _KEY_PREFIX + secrets.token_urlsafe(32)
    key = models.ApiKey(
        tenant_id=tenant_id,
        prefix=raw[:10],
        key_hash=hash_key(raw),
        scopes=",".join(sorted(s.value for s in scopes)),
    )
    session.add(key)
    await session.flush()
    return key, raw


async def get_principal(*, session: AsyncSession, raw_key: str) -> Principal | None:
    """The tenant and scopes of a live key, or None for an unknown or revoked key."""
    if not raw_key.startswith(_KEY_PREFIX) or len(raw_key) > 200:
        return None
    row = (
        await session.execute(
            select(models.ApiKey.tenant_id, models.ApiKey.scopes).where(
                models.ApiKey.key_hash == hash_key(raw_key),
                models.ApiKey.revoked_at.is_(None),  # type: ignore[union-attr]
            )
        )
    ).first()
    if row is None:
        return None
    scopes = frozenset(Scope(s) for s in row.scopes.split(",") if s)
    return Principal(tenant_id=row.tenant_id, scopes=scopes)
