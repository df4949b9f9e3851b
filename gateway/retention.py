"""The history purge: detailed events go after `history_days`, the status stays.

An e-mail's `email_event` rows are kept `history_days` after it was sent. Then
they are deleted and `history_purged_at` is set; the e-mail row keeps its status,
status time, failure, delivery time and open summary forever. From then on
`gateway.ingest.baseline_facts` rebuilds "what the history said" from that summary,
so a late event is projected against it and the status is never lost. The same
job deletes expired pending events and Mailgun nonces older than a day.

Short transactions. Each batch is its own transaction over at most `batch_size`
e-mails: mark them purged, delete their events, commit. Row locks are held for
two statements, never for the whole purge, and a crash loses at most one batch's
work (the next run picks it up: nothing is marked without its events gone).

Locking against ingestion. `gateway.ingest.apply_events` inserts an event, then
locks the e-mail row `FOR NO KEY UPDATE`, re-reads it and recomputes its status
from the summary plus every event it can see. The purge takes the same lock on
its batch *before* deleting events, by marking the rows in the first statement
(`WITH batch AS MATERIALIZED (SELECT ... FOR NO KEY UPDATE SKIP LOCKED) UPDATE ...`):
- an ingestion holding the lock first: the purge skips that e-mail (`SKIP LOCKED`)
  and a later run purges it, with the new event already in the summary;
- the purge holding the lock first: the ingestion's event is not committed, so the
  purge's DELETE cannot see it and leaves it; the ingestion waits for the lock,
  reads the purged row, and projects its event on top of the summary. The event
  is "recorded after" the purge and stays in the (new) history.
Every event the purge deletes was committed, and an ingestion commits its event
and the recomputed summary together, so a deleted event is always in the summary.
Marking and deleting must commit together: a reader that saw the mark with the
events still there would count them twice (baseline plus events), and one that
saw the events gone without the mark would project from nothing. The lock makes
an ingestion read the row and the events either both before or both after.
On SQLite there are no row locks: one writer at a time, and each batch's first
statement is a write, so the whole batch runs under the database's write lock.

Two purges at once (several gateway processes each run the periodic job) do not
wait for each other: `SKIP LOCKED` hands each batch's rows to one of them, and
`history_purged_at IS NULL` is rechecked on the locked row version, so every
e-mail is purged, and counted, exactly once.

Indexes. No new index: the batch is picked per tenant through
`ix_email_tenant_newest (tenant_id, sent_at, id)`, as a range scan of the tenant's
e-mails sent before the cutoff in index order, with a keyset cursor so one run
reads that range once instead of once per batch. Purged rows stay in the range
(e-mails are kept forever), so a run costs a pass over the tenant's old
e-mails; a partial index `(sent_at, id) WHERE history_purged_at IS NULL` would
make it proportional to the work left, and is worth a migration once tables are
large. Pending events and nonces use their `expires_at` and `seen_at` indexes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from gateway import models
from gateway.config import Settings
from gateway.db import SessionFactory
from gateway.repositories import retention as purged

__all__ = ["NONCE_KEEP", "PurgeReport", "purge_history", "purge_periodically"]

log = logging.getLogger(__name__)

# Mailgun refuses a signature whose timestamp is more than minutes old, so an
# older token can never be replayed; a day leaves a wide margin for clock skew.
NONCE_KEEP = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class PurgeReport:
    """What one purge deleted; `email_batches` counts the transactions that purged e-mails."""

    emails: int = 0
    events: int = 0
    pending_events: int = 0
    nonces: int = 0
    email_batches: int = 0

    @property
    def anything(self) -> bool:
        return bool(self.emails or self.pending_events or self.nonces)

    def summary(self) -> str:
        return (
            f"purged the history of {self.emails} e-mails ({self.events} events), "
            f"{self.pending_events} expired pending events, {self.nonces} webhook nonces"
        )


async def _purge_tenant(
    session_factory: SessionFactory,
    *,
    tenant_id: int,
    cutoff: datetime,
    now: datetime,
    batch_size: int,
) -> tuple[int, int, int]:
    emails = events = batches = 0
    after: tuple[datetime, int] | None = None
    while True:
        async with session_factory() as session:
            marked = await purged.mark_history_purged(
                session=session, tenant_id=tenant_id, cutoff=cutoff, now=now, after=after, size=batch_size
            )
            if not marked:
                return emails, events, batches
            ids = [pk for pk, _ in marked]
            deleted = await purged.delete_email_events(session=session, tenant_id=tenant_id, email_ids=ids)
            await session.commit()
        emails += len(ids)
        events += deleted
        batches += 1
        after = max((sent_at, pk) for pk, sent_at in marked)


async def _delete_in_batches(
    session_factory: SessionFactory, delete_batch: Callable[[AsyncSession], Awaitable[int]]
) -> int:
    """Run `delete_batch` until it deletes nothing, each batch its own transaction."""
    total = 0
    while True:
        async with session_factory() as session:
            deleted = await delete_batch(session)
            await session.commit()
        total += deleted
        if deleted == 0:
            return total


async def purge_history(
    *, session_factory: SessionFactory, history_days: int, now: datetime, batch_size: int = 1000
) -> PurgeReport:
    """Purge the history of e-mails sent more than `history_days` before `now`, in batches.

    Also deletes pending events that expired before `now` and Mailgun nonces seen
    more than a day before it. Safe to run while events are being ingested and
    while another process runs it too (see the module docstring); running it again
    right after purges nothing. `now` is a parameter so that tests and the CLI
    decide the clock.
    """
    if history_days < 1:
        raise ValueError(f"history_days must be at least 1, got {history_days}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if now.tzinfo is None:
        raise ValueError(f"now must be an aware UTC datetime, got {now!r}")
    cutoff = now - timedelta(days=history_days)
    async with session_factory() as session:
        tenant_ids = await purged.list_tenant_ids(session=session)
    emails = events = batches = 0
    for tenant_id in tenant_ids:
        e, ev, b = await _purge_tenant(
            session_factory, tenant_id=tenant_id, cutoff=cutoff, now=now, batch_size=batch_size
        )
        emails, events, batches = emails + e, events + ev, batches + b
    pending = await _delete_in_batches(
        session_factory,
        lambda session: purged.delete_expired_pending_events(session=session, now=now, limit=batch_size),
    )
    nonces = await _delete_in_batches(
        session_factory,
        lambda session: purged.delete_old_webhook_nonces(
            session=session, seen_before=now - NONCE_KEEP, limit=batch_size
        ),
    )
    return PurgeReport(emails=emails, events=events, pending_events=pending, nonces=nonces, email_batches=batches)


async def purge_periodically(*, session_factory: SessionFactory, settings: Settings, interval: float) -> None:
    """Purge now, then every `interval` seconds, until cancelled.

    Meant to run as a background task of the app. A failed run (the database
    down for a while, a deadlock victim) is logged and retried at the next tick:
    the purge is idempotent and each committed batch stands, so nothing is lost
    by giving up on a run. Cancellation propagates, so the lifespan can cancel
    and await the task; an interrupted batch is rolled back with its session.
    """
    if interval <= 0:
        raise ValueError(f"interval must be positive, got {interval}")
    while True:
        try:
            report = await purge_history(
                session_factory=session_factory,
                history_days=settings.history_days,
                now=models.utcnow(),
            )
        except Exception:  # any failure: keep the job alive, try again next tick
            log.warning("history purge failed; retrying in %s s", interval, exc_info=True)
        else:
            if report.anything:
                log.info("history purge: %s", report.summary())
        await asyncio.sleep(interval)
