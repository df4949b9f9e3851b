"""The one ingestion path: every source of status goes through here.

Webhooks, the tracking image and the mutations hand over `IncomingEvent`s. This
module records each event once (per e-mail, source and key), recomputes the
status of every e-mail it touched with the pure projection, and writes events,
new statuses and change-log rows in ONE transaction. Only after the commit does
it publish the changes to subscribers, so a subscriber never sees a change that
could still roll back, and a crash before the commit leaves nothing behind for
the provider's retry to trip over.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import orjson
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway import models
from gateway.enums import EmailStatus
from gateway.events import IncomingEvent
from gateway.repositories.emails import list_events_by_email_ids
from gateway.repositories.registration import Registration, register_email, upsert
from gateway.status import Fact, Projection, project

__all__ = [
    "Change",
    "record",
    "Publisher",
    "apply_events",
    "channel_for_tenant",
    "publish_changes",
    "register",
    "write_first_statuses",
]

log = logging.getLogger(__name__)


class Publisher(Protocol):
    async def publish(self, channel: str, message: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Change:
    """One row of the change log, as published to subscribers after commit."""

    position: int
    tenant_id: int
    email_id: int
    previous_status: EmailStatus | None
    status: EmailStatus
    changed_at: datetime

    def to_json(self) -> str:
        return orjson.dumps(
            {
                "position": self.position,
                "email_id": self.email_id,
                "previous_status": self.previous_status.value if self.previous_status else None,
                "status": self.status.value,
                "changed_at": self.changed_at.isoformat(),
            }
        ).decode()


def channel_for_tenant(tenant_id: int) -> str:
    return f"gateway.status.{tenant_id}"


def fact_of(event: models.EmailEvent) -> Fact:
    return Fact(
        key=f"{event.source}:{event.event_key}",
        status=EmailStatus(event.status),
        occurred_at=event.occurred_at,
        failure_category=event.failure_category,
        reason=event.reason,
        smtp_code=event.smtp_code,
        automated=event.machine_open,
    )


def _event_row(tenant_id: int, email_id: int, event: IncomingEvent, now: datetime) -> dict[str, object]:
    return {
        "tenant_id": tenant_id,
        "email_id": email_id,
        "source": event.source,
        "event_key": event.key[:300],
        "status": event.status,
        "occurred_at": event.occurred_at,
        "received_at": now,
        "description": event.description[:2000],
        "failure_category": event.failure_category,
        "reason": event.reason[:2000] if event.reason else None,
        "smtp_code": event.smtp_code,
        "machine_open": bool(event.machine_open),
        "user_agent": event.user_agent[:1000] if event.user_agent else None,
        "ip": event.ip,
    }


def _projection_values(p: Projection) -> dict[str, object]:
    return {
        "status": p.status,
        "status_changed_at": p.status_changed_at,
        "delivered_at": p.delivered_at,
        "failure_category": p.failure.category if p.failure else None,
        "failure_reason": p.failure.reason[:2000] if p.failure else None,
        "failure_smtp_code": p.failure.smtp_code if p.failure else None,
        "failure_occurred_at": p.failure.occurred_at if p.failure else None,
        "open_count": p.opens.count,
        "first_opened_at": p.opens.first_opened_at,
        "last_opened_at": p.opens.last_opened_at,
        "opens_likely_automated": p.opens.likely_automated,
    }


async def _lock_emails(session: AsyncSession, email_ids: Iterable[int]) -> list[models.Email]:
    # Row locks in id order: concurrent ingestions of the same e-mail serialize here,
    # so each recomputes from every event committed before it. FOR NO KEY UPDATE, as
    # the events' foreign keys already hold KEY SHARE locks on these rows: FOR UPDATE
    # would conflict with those of the other writers and deadlock.
    statement = (
        select(models.Email)
        .where(models.Email.id.in_(sorted(set(email_ids))))  # type: ignore[union-attr]
        .order_by(models.Email.id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )
    return list((await session.execute(statement)).scalars().all())


async def apply_events(
    *, session: AsyncSession, events: Sequence[tuple[models.Email, IncomingEvent]]
) -> list[Change]:
    """Record events for known e-mails and write the statuses they change (no commit).

    Set-based: one INSERT for all events (duplicates skipped by the unique key),
    one SELECT for the history of the touched e-mails, one UPDATE and one INSERT
    for what changed, whatever the batch size.
    """
    if not events:
        return []
    now = models.utcnow()
    rows = [_event_row(email.tenant_id, email.id, event, now) for email, event in events]  # type: ignore[arg-type]
    insert_events = upsert(session, models.EmailEvent).on_conflict_do_nothing(
        index_elements=["email_id", "source", "event_key"]
    )
    await session.execute(insert_events, rows)

    emails = await _lock_emails(session, (email.id for email, _ in events))  # type: ignore[misc]
    facts: dict[int, list[Fact]] = defaultdict(list)
    by_tenant: dict[int, list[int]] = defaultdict(list)
    for email in emails:
        by_tenant[email.tenant_id].append(email.id)  # type: ignore[arg-type]
    for tenant_id, ids in by_tenant.items():
        for row in await list_events_by_email_ids(session=session, tenant_id=tenant_id, email_ids=ids):
            facts[row.email_id].append(fact_of(row))

    updates: list[dict[str, object]] = []
    log_rows: list[dict[str, object]] = []
    for email in emails:
        projection = project(email.sent_at, facts[email.id])  # type: ignore[index]
        values = _projection_values(projection)
        if all(getattr(email, name) == value for name, value in values.items()):
            continue
        updates.append({"b_id": email.id, **values})
        if projection.status != email.status:
            log_rows.append(
                {
                    "tenant_id": email.tenant_id,
                    "email_id": email.id,
                    "previous_status": email.status,
                    "status": projection.status,
                    "changed_at": projection.status_changed_at,
                    "recorded_at": now,
                }
            )
    if updates:
        table = models.Email.__table__  # Core executemany: one statement, many rows
        await session.execute(table.update().where(table.c.id == bindparam("b_id")), updates)  # type: ignore[attr-defined]
    return await _log_changes(session, log_rows)


async def _log_changes(session: AsyncSession, rows: list[dict[str, object]]) -> list[Change]:
    if not rows:
        return []
    sc = models.StatusChange
    statement = upsert(session, sc).returning(
        sc.id, sc.tenant_id, sc.email_id, sc.previous_status, sc.status, sc.changed_at
    )
    result = await session.execute(statement, rows)
    return [
        Change(
            position=r.id,
            tenant_id=r.tenant_id,
            email_id=r.email_id,
            previous_status=EmailStatus(r.previous_status) if r.previous_status else None,
            status=EmailStatus(r.status),
            changed_at=r.changed_at,
        )
        for r in result.all()
    ]


async def publish_changes(publisher: Publisher | None, changes: Sequence[Change]) -> None:
    """Tell subscribers, after commit. A broker outage loses nothing: the change log has it."""
    if publisher is None:
        return
    for change in changes:
        try:
            await publisher.publish(channel_for_tenant(change.tenant_id), change.to_json())
        except Exception:  # the commit stands; live clients catch up from the change log
            log.warning("could not publish change %s", change.position, exc_info=True)


async def write_first_statuses(*, session: AsyncSession, emails: Sequence[models.Email]) -> list[Change]:
    """Log the SENT status of newly registered e-mails: the first row of their change log."""
    now = models.utcnow()
    return await _log_changes(
        session,
        [
            {
                "tenant_id": e.tenant_id,
                "email_id": e.id,
                "previous_status": None,
                "status": EmailStatus.SENT,
                "changed_at": e.sent_at,
                "recorded_at": now,
            }
            for e in emails
        ],
    )


async def register(
    *, session: AsyncSession, tenant_id: int, data: Registration, publisher: Publisher | None
) -> models.Email:
    """Register a sent e-mail (idempotent), log its first status, commit, then publish."""
    email, created = await register_email(session=session, tenant_id=tenant_id, data=data)
    changes = await write_first_statuses(session=session, emails=[email]) if created else []
    await session.commit()
    await publish_changes(publisher, changes)
    return email


async def record(
    *, session: AsyncSession, email: models.Email, events: Sequence[IncomingEvent], publisher: Publisher | None
) -> models.Email:
    """Record events for one known e-mail: the path of `recordEmailEvent` and the pixel."""
    changes = await apply_events(session=session, events=[(email, e) for e in events])
    await session.commit()
    await publish_changes(publisher, changes)
    refreshed = await session.get(models.Email, email.id, populate_existing=True)
    return refreshed if refreshed is not None else email
