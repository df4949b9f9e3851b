"""What the demo seed reads: whether an office has e-mails, and ids worth showing."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from gateway import models
from gateway.enums import EmailStatus

__all__ = ["count_emails", "get_newest_email_ids"]


async def count_emails(*, session: AsyncSession, tenant_id: int) -> int:
    """How many e-mails the tenant has registered."""
    statement = select(func.count()).select_from(models.Email).where(col(models.Email.tenant_id) == tenant_id)
    return (await session.execute(statement)).scalar_one()


async def get_newest_email_ids(
    *, session: AsyncSession, tenant_id: int, status: EmailStatus | None = None, with_relation: bool = False
) -> tuple[int, int | None] | None:
    """The (id, relation id) of the tenant's newest e-mail, optionally only among those
    with this status or with a relation; None when there is none."""
    e = models.Email
    statement = (
        select(col(e.id), col(e.relation_id))
        .where(col(e.tenant_id) == tenant_id)
        .order_by(col(e.sent_at).desc(), col(e.id).desc())
        .limit(1)
    )
    if status is not None:
        statement = statement.where(col(e.status) == status)
    if with_relation:
        statement = statement.where(col(e.relation_id).is_not(None))
    row = (await session.execute(statement)).first()
    return (row.id, row.relation_id) if row is not None else None
