"""The statements of the history purge; `gateway.retention` runs them in batches.

Why the batch is picked the way it is (one statement that locks and marks,
MATERIALIZED, SKIP LOCKED, the keyset cursor) is told in `gateway.retention`'s
docstring, next to the locking argument it belongs to.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import ReturningDelete, ReturningUpdate

from gateway import models

__all__ = [
    "delete_email_events",
    "delete_expired_pending_events",
    "delete_old_webhook_nonces",
    "list_tenant_ids",
    "mark_history_purged",
]

_email = models.table_of(models.Email)
_event = models.table_of(models.EmailEvent)
_pending = models.table_of(models.PendingEvent)
_nonce = models.table_of(models.WebhookNonce)
_tenant = models.table_of(models.Tenant)


def _mark_batch(
    *,
    tenant_id: int,
    cutoff: datetime,
    now: datetime,
    after: tuple[datetime, int] | None,
    size: int,
) -> ReturningUpdate[int, datetime]:
    """Lock and mark at most `size` of the tenant's e-mails to purge, oldest first.

    One statement, so the row lock is taken before anything is deleted. The
    lock clause is dropped by SQLAlchemy on SQLite, where the write lock of the
    UPDATE covers the whole batch instead.
    """
    conditions = [
        _email.c.tenant_id == tenant_id,
        _email.c.sent_at < cutoff,
        _email.c.history_purged_at.is_(None),
    ]
    if after is not None:  # keyset: continue past the previous batch in index order
        sent_at, pk = after
        conditions.append(sa.or_(_email.c.sent_at > sent_at, sa.and_(_email.c.sent_at == sent_at, _email.c.id > pk)))
    # MATERIALIZED: the batch is picked and locked once per statement. As a plain
    # subquery, the planner may put it on the inner side of a nested loop and run it
    # again for every outer row; each run skips what another purge locked meanwhile
    # and locks rows further on that this UPDATE then leaves unmarked, but locked,
    # so the other purge skips them too and they wait for the next run.
    batch = (
        sa.select(_email.c.id)
        .where(*conditions)
        .order_by(_email.c.sent_at, _email.c.id)
        .limit(size)
        .with_for_update(key_share=True, skip_locked=True)
        .cte("batch")
        .prefix_with("MATERIALIZED")
    )
    return (
        _email.update()
        .where(_email.c.id.in_(sa.select(batch.c.id)), _email.c.history_purged_at.is_(None))
        .values(history_purged_at=now)
        .returning(_email.c.id, _email.c.sent_at)
    )


def _delete_in_batches_statement(table: sa.Table, condition: sa.ColumnElement[bool], size: int) -> ReturningDelete[int]:
    batch = (  # MATERIALIZED: locked once per statement, as in `_mark_batch`
        sa.select(table.c.id)
        .where(condition)
        .limit(size)
        .with_for_update(skip_locked=True)
        .cte("batch")
        .prefix_with("MATERIALIZED")
    )
    # RETURNING, counted: Python's sqlite3 gives no rowcount for a statement that starts with WITH.
    return table.delete().where(table.c.id.in_(sa.select(batch.c.id))).returning(table.c.id)


async def list_tenant_ids(*, session: AsyncSession) -> list[int]:
    """Every tenant's id, in id order."""
    return list((await session.execute(sa.select(_tenant.c.id).order_by(_tenant.c.id))).scalars())


async def mark_history_purged(
    *,
    session: AsyncSession,
    tenant_id: int,
    cutoff: datetime,
    now: datetime,
    after: tuple[datetime, int] | None,
    size: int,
) -> list[tuple[int, datetime]]:
    """Lock and mark as purged at `now` up to `size` of the tenant's e-mails sent before `cutoff`.

    Oldest first, continuing after the (sent_at, id) `after`; rows another purge
    holds are skipped. Returns the (id, sent_at) of the e-mails marked, whose
    events the caller deletes in the same transaction before it commits.
    """
    statement = _mark_batch(tenant_id=tenant_id, cutoff=cutoff, now=now, after=after, size=size)
    return [(row.id, row.sent_at) for row in (await session.execute(statement)).all()]


async def delete_email_events(*, session: AsyncSession, tenant_id: int, email_ids: Sequence[int]) -> int:
    """Delete the recorded events of these e-mails of the tenant; returns how many were deleted."""
    deleted = await session.execute(
        _event.delete().where(_event.c.tenant_id == tenant_id, _event.c.email_id.in_(email_ids))
    )
    if not isinstance(deleted, sa.CursorResult):  # what a DELETE gives; the type is Result's
        raise TypeError(f"expected a cursor result, got {type(deleted).__name__}")
    return max(deleted.rowcount, 0)


async def delete_expired_pending_events(*, session: AsyncSession, now: datetime, limit: int) -> int:
    """Delete up to `limit` pending events that expired before `now`; returns how many."""
    statement = _delete_in_batches_statement(_pending, _pending.c.expires_at < now, limit)
    return len((await session.execute(statement)).all())


async def delete_old_webhook_nonces(*, session: AsyncSession, seen_before: datetime, limit: int) -> int:
    """Delete up to `limit` webhook nonces seen before `seen_before`; returns how many."""
    statement = _delete_in_batches_statement(_nonce, _nonce.c.seen_at < seen_before, limit)
    return len((await session.execute(statement)).all())
