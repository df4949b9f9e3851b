"""The status change log, read in position order below the writers' watermark."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import BigInteger, ColumnElement, Text, and_, cast, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway import models

__all__ = [
    "Position",
    "change_exists",
    "latest_position",
    "list_changes_after",
    "list_document_ids_by_email_ids",
]

Position = tuple[int, int]
SC = models.StatusChange


def _watermark(session: AsyncSession) -> list[ColumnElement[bool]]:
    # Only rows of transactions older than every transaction still in flight: no
    # row can commit later with a position below what a reader has seen.
    if session.get_bind().dialect.name != "postgresql":
        return []  # SQLite: one writer at a time, ids in commit order
    xmin = cast(cast(func.pg_snapshot_xmin(func.pg_current_snapshot()), Text), BigInteger)
    return [SC.txid < xmin]  # type: ignore[operator]


def _after(position: Position) -> ColumnElement[bool]:
    txid, pk = position
    return or_(SC.txid > txid, and_(SC.txid == txid, SC.id > pk))  # type: ignore[operator,arg-type]


async def list_changes_after(
    *, session: AsyncSession, after: Position, limit: int, tenant_id: int | None = None
) -> list[tuple[models.StatusChange, models.Email]]:
    """Changes after `after` in position order, with their e-mails; one tenant or all."""
    statement = (
        select(SC, models.Email)
        .join(models.Email, models.Email.id == SC.email_id)  # type: ignore[arg-type]
        .where(_after(after), *_watermark(session))
        .order_by(SC.txid, SC.id)
        .limit(limit)
    )
    if tenant_id is not None:
        statement = statement.where(SC.tenant_id == tenant_id)
    return [(change, email) for change, email in (await session.execute(statement)).all()]


async def latest_position(*, session: AsyncSession) -> Position:
    """The newest position below the watermark ((0, 0) for an empty log)."""
    statement = select(SC.txid, SC.id).where(*_watermark(session)).order_by(SC.txid.desc(), SC.id.desc()).limit(1)  # type: ignore[union-attr]
    row = (await session.execute(statement)).first()
    return (int(row[0]), int(row[1])) if row else (0, 0)


async def change_exists(*, session: AsyncSession, tenant_id: int, position: Position) -> bool:
    """Whether `position` is a change of this tenant (a cursor it may resume from)."""
    statement = select(SC.id).where(SC.tenant_id == tenant_id, SC.txid == position[0], SC.id == position[1])
    return (await session.execute(statement)).first() is not None


async def list_document_ids_by_email_ids(
    *, session: AsyncSession, email_ids: Sequence[int]
) -> dict[int, frozenset[int]]:
    """Which documents each e-mail carried, for subscription filters."""
    link = models.EmailDocument
    statement = select(link.email_id, link.document_id).where(link.email_id.in_(email_ids))  # type: ignore[attr-defined]
    found: dict[int, set[int]] = defaultdict(set)
    for email_id, document_id in (await session.execute(statement)).all():
        found[email_id].add(document_id)
    return {e: frozenset(found.get(e, ())) for e in email_ids}
