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
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, Protocol

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from gateway import models
from gateway.enums import EmailStatus, FailureCategory
from gateway.errors import BadInput
from gateway.events import CHANGES_CHANNEL, METADATA_KEY, IncomingEvent, normalize_message_id, normalize_recipient
from gateway.ids import decode_id_of
from gateway.repositories import events as recorded
from gateway.repositories.emails import list_event_facts
from gateway.repositories.events import AnyRow
from gateway.repositories.registration import Registration, register_email
from gateway.status import Fact, Projection, project

__all__ = [
    "Change",
    "ChangeCounter",
    "IngestReport",
    "ingest_events",
    "baseline_facts",
    "fact_of",
    "record",
    "Publisher",
    "apply_events",
    "CHANGES_CHANNEL",
    "publish_changes",
    "register",
    "write_first_statuses",
]

log = logging.getLogger(__name__)

# The source of an e-mail's first status (SENT), which no event reports.
REGISTRATION_SOURCE = "registration"


class Publisher(Protocol):
    async def publish(self, channel: str, message: str) -> None: ...


class EmailRef(Protocol):
    """What recording an event needs of its e-mail: the model, or a plain row of these columns."""

    @property
    def id(self) -> int | None: ...

    @property
    def tenant_id(self) -> int: ...


class ChangeCounter(Protocol):
    """Counts committed status changes (the metrics); called after the commit, never before."""

    def count_changes(self, changes: Sequence[Change]) -> None: ...


@dataclass(frozen=True, slots=True)
class Change:
    """One row of the change log, announced to subscribers after commit."""

    position: tuple[int, int]
    tenant_id: int
    email_id: int
    previous_status: EmailStatus | None
    status: EmailStatus
    changed_at: datetime
    # What caused it, for the metrics: the source of the newest event that did (the
    # registration for a first SENT), and the failure category when it failed.
    source: str | None = None
    failure_category: FailureCategory | None = None

    def to_json(self) -> str:
        # Only an announcement: subscribers read the change itself from the change
        # log, in position order, so what travels here can be lost or reordered.
        return orjson.dumps({"tenant_id": self.tenant_id, "position": list(self.position)}).decode()


def fact_of(event: Any) -> Fact:
    """The projection's view of a recorded event (a model, or a row with its columns)."""
    return Fact(
        key=f"{event.source}:{event.event_key}",
        status=EmailStatus(event.status),
        occurred_at=event.occurred_at,
        failure_category=event.failure_category,
        reason=event.reason,
        smtp_code=event.smtp_code,
        automated=event.machine_open,
    )


def baseline_facts(email: models.Email | AnyRow) -> list[Fact]:
    """What the history said, rebuilt from the summary kept on the e-mail row.

    Once the history is purged only the row's summary remains; an event that
    arrives later is projected together with these facts, so the status, the
    failure, the delivery time, the open count and the complaint survive the purge.
    """
    if email.history_purged_at is None:
        return []
    facts = [Fact(key="baseline:status", status=email.status, occurred_at=email.status_changed_at)]
    if email.failure_occurred_at is not None and email.failure_category is not None:
        facts.append(
            Fact(
                key="baseline:failure",
                status=EmailStatus.DELIVERY_FAILED,
                occurred_at=email.failure_occurred_at,
                failure_category=email.failure_category,
                reason=email.failure_reason,
                smtp_code=email.failure_smtp_code,
            )
        )
    if email.delivered_at is not None:
        facts.append(Fact(key="baseline:delivered", status=EmailStatus.DELIVERED, occurred_at=email.delivered_at))
    if email.complained_at is not None:
        facts.append(
            Fact(
                key="baseline:complaint",
                status=EmailStatus.DELIVERED,
                occurred_at=email.complained_at,
                failure_category=FailureCategory.SPAM_COMPLAINT,
            )
        )
    if email.open_count and email.first_opened_at and email.last_opened_at:
        # The first and last opens, and the open that made the status OPENED, with
        # weights that add up to the open count.
        times = sorted(
            {email.first_opened_at, email.last_opened_at}
            | ({email.status_changed_at} if email.status is EmailStatus.OPENED else set())
        )
        weights = [1] * len(times)
        weights[0] = max(1, email.open_count - (len(times) - 1))
        facts += [
            Fact(f"baseline:open-{i}", EmailStatus.OPENED, at, automated=email.opens_likely_automated, weight=w)
            for i, (at, w) in enumerate(zip(times, weights, strict=True))
        ]
    if email.status in (EmailStatus.OPENED, EmailStatus.DELIVERY_FAILED):
        # The open facts, or the failure fact, carry the status and its time.
        facts = [f for f in facts if f.key != "baseline:status"]
    return facts


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
        "complained_at": p.complaint.occurred_at if p.complaint else None,
    }


async def apply_events(*, session: AsyncSession, events: Sequence[tuple[EmailRef, IncomingEvent]]) -> list[Change]:
    """Record events for known e-mails and write the statuses they change (no commit).

    Set-based: one INSERT for all events (duplicates skipped by the unique key),
    one SELECT for the history of the touched e-mails, one UPDATE and one INSERT
    for what changed, whatever the batch size.
    """
    changes, _ = await _apply(session, events)
    return changes


async def _apply(session: AsyncSession, events: Sequence[tuple[EmailRef, IncomingEvent]]) -> tuple[list[Change], int]:
    """`apply_events`, and how many events were new (a replay inserts nothing)."""
    if not events:
        return [], 0
    now = models.utcnow()
    # Rows in key order: two overlapping batches (a provider retrying) then take
    # their unique-index locks in the same order and cannot deadlock.
    rows = sorted(
        (_event_row(email.tenant_id, models.stored_id(email.id), event, now) for email, event in events),
        key=lambda r: (r["email_id"], r["source"], r["event_key"]),
    )
    inserted = await recorded.insert_events(session=session, rows=rows)

    emails = await recorded.lock_emails(session=session, email_ids=(models.stored_id(e.id) for e, _ in events))
    facts: dict[int, list[Fact]] = defaultdict(list)
    for row in await list_event_facts(session=session, email_ids=[e.id for e in emails]):
        facts[row.email_id].append(fact_of(row))

    updates: dict[int, dict[str, object]] = {}
    log_rows: list[dict[str, object]] = []
    causes: dict[int, tuple[str | None, FailureCategory | None]] = {}
    newest: dict[int, IncomingEvent] = {}
    for ref, event in events:
        email_id = models.stored_id(ref.id)
        if email_id not in newest or event.occurred_at >= newest[email_id].occurred_at:
            newest[email_id] = event
    for email in emails:
        projection = project(email.sent_at, [*baseline_facts(email), *facts[email.id]])
        values = _projection_values(projection)
        if all(getattr(email, name) == value for name, value in values.items()):
            continue
        updates[email.id] = values
        if projection.status != email.status:
            failure = projection.failure if projection.status == EmailStatus.DELIVERY_FAILED else None
            cause = newest.get(email.id)
            causes[email.id] = (cause.source if cause else None, failure.category if failure else None)
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
    await recorded.update_email_summaries(session=session, values=updates)
    return await _log_changes(session, log_rows, causes), inserted


async def _log_changes(
    session: AsyncSession,
    rows: list[dict[str, object]],
    causes: dict[int, tuple[str | None, FailureCategory | None]],
) -> list[Change]:
    return [
        Change(
            position=(r.txid, r.id),
            tenant_id=r.tenant_id,
            email_id=r.email_id,
            previous_status=EmailStatus(r.previous_status) if r.previous_status else None,
            status=EmailStatus(r.status),
            changed_at=r.changed_at,
            source=causes.get(r.email_id, (None, None))[0],
            failure_category=causes.get(r.email_id, (None, None))[1],
        )
        for r in await recorded.insert_status_changes(session=session, rows=rows)
    ]


async def publish_changes(
    publisher: Publisher | None, changes: Sequence[Change], counter: ChangeCounter | None = None
) -> None:
    """Tell subscribers (and count the changes), after commit. A broker outage loses nothing:
    the change log has it."""
    if counter is not None and changes:
        counter.count_changes(changes)
    if publisher is None or not changes:
        return
    # One announcement per batch is enough: the feed reads everything after its cursor.
    try:
        await publisher.publish(CHANGES_CHANNEL, max(changes, key=lambda c: c.position).to_json())
    except Exception:  # the commit stands; live clients catch up from the change log
        log.warning("could not announce %d changes", len(changes), exc_info=True)


@dataclass(frozen=True, slots=True)
class IngestReport:
    """What became of a batch: events newly applied, and events kept pending
    (`ambiguous` of them because they match several e-mails)."""

    applied: int
    pending: int
    ambiguous: int


def _choose(candidates: Sequence[Any], event: IncomingEvent, *, by_recipient_only: bool = False) -> tuple[Any, str]:
    """The one e-mail among those with the event's message id, or None and why not.

    A send to several recipients has one message id at most providers, and two
    offices can register the same id: the recipient then tells them apart. A
    lone candidate takes the event even when the provider spells the recipient
    differently, unless `by_recipient_only` (other recipients' events are known
    to be waiting under this id).
    """
    wanted = normalize_recipient(event.recipient)
    same = [c for c in candidates if wanted is not None and normalize_recipient(c.recipient) == wanted]
    if len(same) == 1:
        return same[0], ""
    if len(candidates) == 1 and not same and not by_recipient_only:
        return candidates[0], ""
    if not candidates or (by_recipient_only and not same):
        return None, "unregistered"
    return None, f"ambiguous: {len(same) or len(candidates)} e-mails"


async def _match(
    session: AsyncSession, events: Sequence[IncomingEvent]
) -> tuple[list[tuple[EmailRef, IncomingEvent]], list[tuple[IncomingEvent, str]]]:
    """Pair events with e-mails: by the gateway id in the metadata, else by message id
    (and recipient); the others come back with the reason they wait."""
    refs: dict[str, int] = {}
    for e in events:
        if e.email_ref:
            try:
                refs[e.email_ref] = decode_id_of(e.email_ref, "Email")
            except BadInput:
                log.warning("ignoring malformed %s %r from %s", METADATA_KEY, e.email_ref[:100], e.source)
    message_ids = {m for e in events if (m := normalize_message_id(e.provider_message_id))}
    by_id = await recorded.list_email_refs_by_ids(session=session, email_ids=refs.values()) if refs else {}
    by_message = (
        await recorded.list_emails_by_message_ids(session=session, message_ids=message_ids) if message_ids else {}
    )
    matched: list[tuple[EmailRef, IncomingEvent]] = []
    unmatched: list[tuple[IncomingEvent, str]] = []
    for e in events:
        email = by_id.get(refs[e.email_ref]) if e.email_ref is not None and e.email_ref in refs else None
        reason = "unregistered"
        if email is None:
            email, reason = _choose(by_message.get(normalize_message_id(e.provider_message_id) or "", []), e)
        if email is None:
            if reason != "unregistered":
                log.warning(
                    "event %s from %s kept pending: message id %r is %s",
                    e.key[:100],
                    e.source,
                    e.provider_message_id,
                    reason,
                )
            unmatched.append((e, reason))
        else:
            matched.append((email, e))
    return matched, unmatched


def _pending_row(event: IncomingEvent, reason: str, now: datetime, keep: timedelta) -> dict[str, object]:
    payload = {f.name: getattr(event, f.name) for f in fields(event)}
    return {
        "reason": reason[:200],
        "source": event.source,
        "event_key": event.key[:300],
        "provider_message_id": normalize_message_id(event.provider_message_id),
        "email_ref": event.email_ref[:200] if event.email_ref else None,
        "payload": orjson.dumps(payload).decode(),
        "received_at": now,
        "expires_at": now + keep,
    }


def _event_from_pending(row: models.PendingEvent) -> IncomingEvent:
    data = orjson.loads(row.payload)
    data["occurred_at"] = datetime.fromisoformat(data["occurred_at"])
    data["status"] = EmailStatus(data["status"])
    if data.get("failure_category"):
        data["failure_category"] = FailureCategory(data["failure_category"])
    return IncomingEvent(**data)


async def ingest_events(
    *,
    session: AsyncSession,
    events: Sequence[IncomingEvent],
    publisher: Publisher | None,
    keep_pending: timedelta,
    counter: ChangeCounter | None = None,
) -> IngestReport:
    """The webhook path: match, record, keep the unmatched for later, commit, publish.

    All or nothing: one transaction for the whole batch. Events for e-mails not
    registered yet (a webhook can beat the registration) are kept as pending
    events until `keep_pending` has passed; `register` applies them.
    """
    matched, unmatched = await _match(session, events)
    changes, applied = await _apply(session, matched)
    if unmatched:
        now = models.utcnow()
        rows = (_pending_row(e, reason, now, keep_pending) for e, reason in unmatched)
        await recorded.insert_pending_events(
            session=session, rows=sorted(rows, key=lambda r: (str(r["source"]), str(r["event_key"])))
        )
    await session.commit()
    await publish_changes(publisher, changes, counter)
    ambiguous = sum(1 for _, reason in unmatched if reason != "unregistered")
    return IngestReport(applied=applied, pending=len(unmatched), ambiguous=ambiguous)


async def _apply_pending(session: AsyncSession, email: models.Email) -> list[Change] | None:
    """Apply the events kept for this e-mail's message id that are its own; None when none were.

    Matched as a webhook's events are, among every e-mail with that id. When
    waiting events name this e-mail's recipient, the id is a send to several
    recipients: an event naming another recipient then waits for its own e-mail.
    """
    message_id = normalize_message_id(email.provider_message_id)
    if message_id is None:
        return None
    rows = await recorded.list_pending_events(session=session, provider_message_id=message_id, now=models.utcnow())
    if not rows:
        return None
    waiting = [(row, _event_from_pending(row)) for row in rows]
    candidates = (await recorded.list_emails_by_message_ids(session=session, message_ids=[message_id]))[message_id]
    own = normalize_recipient(email.recipient)
    by_recipient_only = any(normalize_recipient(event.recipient) == own for _, event in waiting)
    chosen = []
    for row, event in waiting:
        match, _ = _choose(candidates, event, by_recipient_only=by_recipient_only)
        if match is not None:
            chosen.append((row, match, event))
    if not chosen:
        return None
    changes = await apply_events(session=session, events=[(match, event) for _, match, event in chosen])
    await recorded.delete_pending_events(session=session, ids=[models.stored_id(row.id) for row, _, _ in chosen])
    return changes


async def write_first_statuses(*, session: AsyncSession, emails: Sequence[models.Email]) -> list[Change]:
    """Log the SENT status of newly registered e-mails: the first row of their change log."""
    now = models.utcnow()
    causes: dict[int, tuple[str | None, FailureCategory | None]] = {
        models.stored_id(e.id): (REGISTRATION_SOURCE, None) for e in emails
    }
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
        causes,
    )


async def register(
    *,
    session: AsyncSession,
    tenant_id: int,
    data: Registration,
    publisher: Publisher | None,
    counter: ChangeCounter | None = None,
) -> models.Email:
    """Register a sent e-mail (idempotent), log its first status, commit, then publish."""
    email, created = await register_email(session=session, tenant_id=tenant_id, data=data)
    changes: list[Change] = []
    pending = None
    if created:
        changes = await write_first_statuses(session=session, emails=[email])
        pending = await _apply_pending(session, email)
        changes += pending or []
    await session.commit()
    await publish_changes(publisher, changes, counter)
    # Only pending events change the row after it was read: no reload otherwise.
    return await recorded.reload_email(session=session, email=email) if pending is not None else email


async def record(
    *,
    session: AsyncSession,
    email: models.Email,
    events: Sequence[IncomingEvent],
    publisher: Publisher | None,
    counter: ChangeCounter | None = None,
) -> models.Email:
    """Record events for one known e-mail: the path of `recordEmailEvent` and the pixel."""
    changes = await apply_events(session=session, events=[(email, e) for e in events])
    await session.commit()
    await publish_changes(publisher, changes, counter)
    return await recorded.reload_email(session=session, email=email)
