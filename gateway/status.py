"""The status projection: an e-mail's set of events in, its shown status out.

Pure: no I/O, no framework, no clock. The result depends on the *set* of events
only (deduplicated by key), never on the order they arrived in, so the same
events replayed in any order and with any duplicates give the same answer.

The rules (DESIGN.md, "Last known status"):
- OPENED implies delivery and outranks DELIVERED and SENT; DELIVERED outranks SENT.
- DELIVERY_FAILED outranks SENT and every DELIVERED or OPENED that came before it.
- A DELIVERED or OPENED that came after the last failure (a retried soft bounce)
  wins over it.
- A spam complaint (failure category SPAM_COMPLAINT) is no failure: it proves the
  message reached the recipient, so it counts as a delivery (whatever status it
  was recorded with) and is kept as the complaint; the first one gives its time.
- "Before" and "after" follow one total order: occurredAt, then the fixed order
  SENT < DELIVERED < DELIVERY_FAILED < OPENED, then the event key. So a failure and
  a delivery at the same instant show the failure; an open at that instant wins.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from gateway.enums import EmailStatus, FailureCategory

__all__ = ["Complaint", "Failure", "Fact", "Opens", "Projection", "project"]

_FIXED_ORDER = {
    EmailStatus.SENT: 0,
    EmailStatus.DELIVERED: 1,
    EmailStatus.DELIVERY_FAILED: 2,
    EmailStatus.OPENED: 3,
}
_POSITIVE_RANK = {EmailStatus.DELIVERED: 1, EmailStatus.OPENED: 2}


@dataclass(frozen=True, slots=True)
class Fact:
    """One recorded event as the projection sees it."""

    key: str
    status: EmailStatus
    occurred_at: datetime
    failure_category: FailureCategory | None = None
    reason: str | None = None
    smtp_code: int | None = None
    automated: bool = False
    # How many opens this fact stands for: 1, except in the summary kept after
    # the history was purged (see gateway.ingest.baseline_facts).
    weight: int = 1

    @property
    def order(self) -> tuple[datetime, int, str]:
        return (self.occurred_at, _FIXED_ORDER[self.status], self.key)

    @property
    def _identity(self) -> tuple[object, ...]:
        # A total order over every field, so that even two different facts
        # under one key are resolved the same way whatever their arrival order.
        category = self.failure_category.value if self.failure_category else ""
        return (*self.order, category, self.reason or "", self.smtp_code or 0, self.automated, self.weight)


@dataclass(frozen=True, slots=True)
class Failure:
    category: FailureCategory
    reason: str
    smtp_code: int | None
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class Opens:
    count: int = 0
    first_opened_at: datetime | None = None
    last_opened_at: datetime | None = None
    likely_automated: bool = False


@dataclass(frozen=True, slots=True)
class Complaint:
    """The recipient reported the e-mail as spam (the first report)."""

    occurred_at: datetime
    reason: str | None


@dataclass(frozen=True, slots=True)
class Projection:
    status: EmailStatus
    status_changed_at: datetime
    delivered_at: datetime | None
    failure: Failure | None  # the latest failure, superseded or not
    opens: Opens
    complaint: Complaint | None = None


def _as_delivery(fact: Fact) -> Fact:
    # A complaint proves delivery; an open stays an open (it outranks delivery anyway).
    if fact.failure_category is FailureCategory.SPAM_COMPLAINT and fact.status is not EmailStatus.OPENED:
        return replace(fact, status=EmailStatus.DELIVERED)
    return fact


def _dedupe(facts: Iterable[Fact]) -> list[Fact]:
    # One event per key; should two differ (they never do once stored), the
    # first in the total order wins, so even then arrival order does not matter.
    by_key: dict[str, Fact] = {}
    for fact in facts:
        kept = by_key.get(fact.key)
        if kept is None or fact._identity < kept._identity:
            by_key[fact.key] = fact
    return sorted(by_key.values(), key=lambda f: f.order)


def _opens(events: list[Fact]) -> Opens:
    opens = [e for e in events if e.status is EmailStatus.OPENED]
    if not opens:
        return Opens()
    return Opens(
        count=sum(e.weight for e in opens),
        first_opened_at=opens[0].occurred_at,
        last_opened_at=opens[-1].occurred_at,
        likely_automated=all(e.automated for e in opens),
    )


def project(sent_at: datetime, facts: Iterable[Fact]) -> Projection:
    """The shown status of an e-mail sent at `sent_at` that has these events."""
    events = _dedupe(_as_delivery(f) for f in facts)
    complaints = [e for e in events if e.failure_category is FailureCategory.SPAM_COMPLAINT]
    complaint = Complaint(complaints[0].occurred_at, complaints[0].reason) if complaints else None
    failures = [e for e in events if e.status is EmailStatus.DELIVERY_FAILED]
    last_failure = failures[-1] if failures else None
    after_failure = [
        e for e in events if e.status in _POSITIVE_RANK and (last_failure is None or e.order > last_failure.order)
    ]
    # An open implies delivery: the first of either is when it was known delivered.
    delivered = [e for e in events if e.status in _POSITIVE_RANK]
    delivered_at = delivered[0].occurred_at if delivered else None
    opens = _opens(events)

    # The latest failure is kept even when a later delivery superseded it: the
    # API shows it only while the status is DELIVERY_FAILED, and a summary that
    # outlives the purged history needs it to place late events correctly.
    failure = (
        Failure(
            category=last_failure.failure_category or FailureCategory.OTHER,
            reason=last_failure.reason or "",
            smtp_code=last_failure.smtp_code,
            occurred_at=last_failure.occurred_at,
        )
        if last_failure is not None
        else None
    )
    if after_failure:
        top = max(_POSITIVE_RANK[e.status] for e in after_failure)
        deciding = next(e for e in after_failure if _POSITIVE_RANK[e.status] == top)
        return Projection(deciding.status, deciding.occurred_at, delivered_at, failure, opens, complaint)
    if last_failure is not None:
        return Projection(
            EmailStatus.DELIVERY_FAILED, last_failure.occurred_at, delivered_at, failure, opens, complaint
        )
    sent = [e for e in events if e.status is EmailStatus.SENT]
    changed_at = min(sent_at, sent[0].occurred_at) if sent else sent_at
    return Projection(EmailStatus.SENT, changed_at, delivered_at, None, opens, complaint)
