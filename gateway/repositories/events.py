"""The statements of the one ingestion path: events, pending events, status changes.

`gateway.ingest` decides what to write; this module writes it. Each function is
set-based (one statement for a whole batch) and leaves the commit to the caller,
so that events, statuses and change-log rows commit in one transaction. Rows
come back as plain Core rows: a batch touches a thousand e-mails at a time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from sqlalchemy import bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from gateway import models
from gateway.repositories._sql import AnyRow, dialect_insert

__all__ = [
    "AnyRow",
    "delete_pending_events",
    "insert_events",
    "insert_pending_events",
    "insert_status_changes",
    "list_email_refs_by_ids",
    "list_emails_by_message_ids",
    "list_pending_events",
    "lock_emails",
    "reload_email",
    "update_email_summaries",
]

_EMAIL = models.table_of(models.Email)
_EVENT = models.table_of(models.EmailEvent)
_PENDING = models.table_of(models.PendingEvent)


async def insert_events(*, session: AsyncSession, rows: Sequence[Mapping[str, object]]) -> int:
    """Insert `email_event` rows, skipping those already recorded; returns how many were new.

    An event is recorded once per e-mail, source and key: a replayed event hits the
    unique key and is neither inserted nor counted. Give the rows sorted by that key,
    so that two overlapping batches (a provider retrying) take their unique-index
    locks in the same order and cannot deadlock.
    """
    if not rows:
        return 0
    statement = (
        dialect_insert(session, _EVENT)
        .on_conflict_do_nothing(index_elements=["email_id", "source", "event_key"])
        .returning(_EVENT.c.id)
    )
    return len((await session.execute(statement, list(rows))).all())


async def lock_emails(*, session: AsyncSession, email_ids: Iterable[int]) -> list[AnyRow]:
    """The e-mail rows with these ids, locked until the commit, in id order.

    Concurrent ingestions of the same e-mail serialize here, so each recomputes
    from every event committed before it. FOR NO KEY UPDATE, as the events'
    foreign keys already hold KEY SHARE locks on these rows: FOR UPDATE would
    conflict with those of the other writers and deadlock.
    """
    statement = (
        select(_EMAIL)
        .where(_EMAIL.c.id.in_(sorted(set(email_ids))))
        .order_by(_EMAIL.c.id)
        .with_for_update(key_share=True)
    )
    return list((await session.execute(statement)).all())


async def update_email_summaries(*, session: AsyncSession, values: Mapping[int, Mapping[str, object]]) -> None:
    """Write each e-mail's new status summary (e-mail id -> column values), in one executemany."""
    if not values:
        return
    rows = [{"b_id": email_id, **columns} for email_id, columns in values.items()]
    await session.execute(_EMAIL.update().where(_EMAIL.c.id == bindparam("b_id")), rows)


async def insert_status_changes(*, session: AsyncSession, rows: Sequence[Mapping[str, object]]) -> list[AnyRow]:
    """Append rows to the change log; returns them with their positions (txid, id).

    The transaction id is the database's own (a server default on PostgreSQL), which
    is what makes the subscription cursor safe under concurrent writers.
    """
    if not rows:
        return []
    sc = models.StatusChange
    statement = dialect_insert(session, sc).returning(
        col(sc.id),
        col(sc.txid),
        col(sc.tenant_id),
        col(sc.email_id),
        col(sc.previous_status),
        col(sc.status),
        col(sc.changed_at),
    )
    return list((await session.execute(statement, list(rows))).all())


async def list_email_refs_by_ids(*, session: AsyncSession, email_ids: Iterable[int]) -> dict[int, AnyRow]:
    """The e-mails with these ids, any tenant, as rows of (id, tenant_id): what an event
    that names its e-mail by the gateway's id needs to be recorded."""
    e = models.Email
    statement = select(col(e.id), col(e.tenant_id)).where(col(e.id).in_(set(email_ids)))
    return {row.id: row for row in (await session.execute(statement)).all()}


async def list_emails_by_message_ids(*, session: AsyncSession, message_ids: Iterable[str]) -> dict[str, list[AnyRow]]:
    """Every e-mail registered under each provider message id, any tenant, as rows of
    (id, tenant_id, provider_message_id, recipient): only what matching an event needs.

    A send to several recipients shares one message id, and two offices can
    register the same one: the caller tells them apart by recipient.
    """
    e = models.Email
    statement = select(col(e.id), col(e.tenant_id), col(e.provider_message_id), col(e.recipient)).where(
        col(e.provider_message_id).in_(set(message_ids))
    )
    found: dict[str, list[AnyRow]] = defaultdict(list)
    for row in (await session.execute(statement)).all():
        found[row.provider_message_id].append(row)
    return found


async def insert_pending_events(*, session: AsyncSession, rows: Sequence[Mapping[str, object]]) -> None:
    """Keep events that match no registered e-mail yet; an event already kept (same source
    and key) is left as it is. Give the rows sorted by (source, event_key), for the lock order."""
    if not rows:
        return
    statement = dialect_insert(session, _PENDING).on_conflict_do_nothing(index_elements=["source", "event_key"])
    await session.execute(statement, list(rows))


async def list_pending_events(
    *, session: AsyncSession, provider_message_id: str, now: datetime
) -> list[models.PendingEvent]:
    """The events kept under this provider message id that have not expired at `now`."""
    pe = models.PendingEvent
    statement = select(pe).where(col(pe.provider_message_id) == provider_message_id, col(pe.expires_at) > now)
    return list((await session.execute(statement)).scalars())


async def delete_pending_events(*, session: AsyncSession, ids: Sequence[int]) -> None:
    """Forget these pending events (they were applied to their e-mail)."""
    if ids:
        await session.execute(delete(models.PendingEvent).where(col(models.PendingEvent.id).in_(ids)))


async def reload_email(*, session: AsyncSession, email: models.Email) -> models.Email:
    """The e-mail as the database has it now, refreshed in place.

    The ingestion path updates e-mails with Core statements, which the session's
    copy of the model does not see.
    """
    refreshed = await session.get(models.Email, email.id, populate_existing=True)
    return refreshed if refreshed is not None else email
