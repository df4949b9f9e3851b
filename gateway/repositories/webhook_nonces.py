"""Signature tokens the webhooks have seen, to refuse a replayed token with another body."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from gateway import models
from gateway.repositories._sql import dialect_insert

__all__ = ["record_webhook_nonce"]


async def record_webhook_nonce(
    *, session: AsyncSession, source: str, token: str, body_hash: str, now: datetime
) -> bool:
    """Remember that `source` signed `token` over the body with this hash; False for a replay.

    A token seen before with the same body is a provider's retry and is accepted;
    one seen with another body is a replay. The first body recorded wins, also
    between concurrent requests (the unique key on source and token decides), so
    the caller must roll back on False. The caller commits.
    """
    nonce = models.WebhookNonce
    insert = dialect_insert(session, nonce).on_conflict_do_nothing(index_elements=["source", "token"])
    await session.execute(insert, [{"source": source, "token": token, "body_hash": body_hash, "seen_at": now}])
    seen = (
        await session.execute(
            select(col(nonce.body_hash)).where(col(nonce.source) == source, col(nonce.token) == token)
        )
    ).scalar_one()
    return seen == body_hash
