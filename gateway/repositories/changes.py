"""The status change log: what subscribers replay after a cursor."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway import models

__all__ = ["latest_position", "list_changes_after", "list_document_ids_by_email_ids"]


async def list_changes_after(
    *, session: AsyncSession, tenant_id: int, after: int, limit: int
) -> list[models.StatusChange]:
    """The tenant's changes after position `after`, oldest first, at most `limit`."""
    sc = models.StatusChange
    statement = (
        select(sc)
        .where(sc.tenant_id == tenant_id, sc.id > after)  # type: ignore[operator]
        .order_by(sc.id)
        .limit(limit)
    )
    return list((await session.execute(statement)).scalars().all())


async def list_document_ids_by_email_ids(
    *, session: AsyncSession, tenant_id: int, email_ids: Sequence[int]
) -> dict[int, set[int]]:
    """Which documents each e-mail carried, for subscription filters."""
    link = models.EmailDocument
    statement = select(link.email_id, link.document_id).where(
        link.tenant_id == tenant_id, link.email_id.in_(email_ids)  # type: ignore[attr-defined]
    )
    found: dict[int, set[int]] = {e: set() for e in email_ids}
    for email_id, document_id in (await session.execute(statement)).all():
        found[email_id].add(document_id)
    return found


async def latest_position(*, session: AsyncSession, tenant_id: int) -> int:
    """The tenant's newest change-log position (0 when it has none)."""
    sc = models.StatusChange
    statement = select(sc.id).where(sc.tenant_id == tenant_id).order_by(sc.id.desc()).limit(1)  # type: ignore[union-attr]
    return int((await session.execute(statement)).scalar_one_or_none() or 0)
