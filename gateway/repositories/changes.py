"""The status change log, read in position order below the writers' watermark."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import ColumnElement, and_, literal_column, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

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


# The oldest transaction still in flight that may write to this database: the
# snapshot's in-progress list, less the transactions of backends connected to
# other databases (they cannot write our change log, and on a shared server
# their long transactions would otherwise hold our readers back). A backend
# whose database is unknown counts as ours: being wrong that way only delays.
_WATERMARK = text(
    """(WITH snap AS (SELECT pg_current_snapshot() AS s),
          other AS (SELECT backend_xid::text::bigint AS x FROM pg_stat_activity
                    WHERE backend_xid IS NOT NULL AND datname IS DISTINCT FROM current_database()
                      AND datname IS NOT NULL)
     SELECT coalesce(
       (SELECT min(x::text::bigint) FROM snap, pg_snapshot_xip(snap.s) AS x
         WHERE (x::text::bigint % 4294967296) NOT IN (SELECT x FROM other)),
       (SELECT pg_snapshot_xmax(s)::text::bigint FROM snap)))"""
)


def _watermark(session: AsyncSession) -> list[ColumnElement[bool]]:
    # Only rows of transactions older than every transaction still in flight: no
    # row can commit later with a position below what a reader has seen.
    if session.get_bind().dialect.name != "postgresql":
        return []  # SQLite: one writer at a time, ids in commit order
    return [col(SC.txid) < literal_column(_WATERMARK.text)]


def _after(position: Position) -> ColumnElement[bool]:
    txid, pk = position
    return or_(col(SC.txid) > txid, and_(col(SC.txid) == txid, col(SC.id) > pk))


async def list_changes_after(
    *, session: AsyncSession, after: Position, limit: int, tenant_id: int | None = None
) -> list[tuple[models.StatusChange, models.Email]]:
    """Changes after `after` in position order, with their e-mails; one tenant or all."""
    statement = (
        select(SC, models.Email)
        .join(models.Email, col(models.Email.id) == col(SC.email_id))
        .where(_after(after), *_watermark(session))
        .order_by(col(SC.txid), col(SC.id))
        .limit(limit)
    )
    if tenant_id is not None:
        statement = statement.where(col(SC.tenant_id) == tenant_id)
    return [(change, email) for change, email in (await session.execute(statement)).all()]


async def latest_position(*, session: AsyncSession, tenant_id: int | None = None) -> Position:
    """The newest position below the watermark, of one tenant or all ((0, 0) for an empty log)."""
    statement = (
        select(col(SC.txid), col(SC.id))
        .where(*_watermark(session))
        .order_by(col(SC.txid).desc(), col(SC.id).desc())
        .limit(1)
    )
    if tenant_id is not None:
        statement = statement.where(col(SC.tenant_id) == tenant_id)
    row = (await session.execute(statement)).first()
    return (models.stored_id(row.txid), models.stored_id(row.id)) if row else (0, 0)


async def change_exists(*, session: AsyncSession, tenant_id: int, position: Position) -> bool:
    """Whether `position` is a change of this tenant (a cursor it may resume from)."""
    statement = select(col(SC.id)).where(
        col(SC.tenant_id) == tenant_id, col(SC.txid) == position[0], col(SC.id) == position[1]
    )
    return (await session.execute(statement)).first() is not None


async def list_document_ids_by_email_ids(
    *, session: AsyncSession, email_ids: Sequence[int]
) -> dict[int, frozenset[int]]:
    """Which documents each e-mail carried, for subscription filters."""
    link = models.EmailDocument
    statement = select(col(link.email_id), col(link.document_id)).where(col(link.email_id).in_(email_ids))
    found: dict[int, set[int]] = defaultdict(set)
    for email_id, document_id in (await session.execute(statement)).all():
        found[email_id].add(document_id)
    return {e: frozenset(found.get(e, ())) for e in email_ids}
