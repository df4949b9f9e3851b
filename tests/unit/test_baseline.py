"""After a history purge, new events give what the full history would have given."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import models
from gateway.enums import EmailStatus, FailureCategory
from gateway.ingest import _projection_values, baseline_facts
from gateway.status import Fact, project

T = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
STATUSES = [EmailStatus.SENT, EmailStatus.DELIVERED, EmailStatus.DELIVERY_FAILED, EmailStatus.OPENED]


COMPLAINT = "complaint"  # a spam complaint: recorded as DELIVERED with its category


def _fact(prefix: str, i: int, status: EmailStatus | str, minute: int, automated: bool) -> Fact:
    if status == COMPLAINT:
        return Fact(
            key=f"{prefix}{i}",
            status=EmailStatus.DELIVERED,
            occurred_at=T + timedelta(minutes=minute),
            failure_category=FailureCategory.SPAM_COMPLAINT,
        )
    failed = status is EmailStatus.DELIVERY_FAILED
    return Fact(
        key=f"{prefix}{i}",
        status=status,
        occurred_at=T + timedelta(minutes=minute),  # type: ignore[arg-type]
        failure_category=FailureCategory.HARD_BOUNCE if failed else None,
        reason=f"reason {i}" if failed else None,
        smtp_code=550 if failed else None,
        automated=automated and status is EmailStatus.OPENED,
    )


KINDS = [*STATUSES, COMPLAINT]
histories = st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 30), st.booleans()), max_size=8)
# Events that happen after the purge: the summary cannot place an event among the
# ones it no longer has (a failure between two purged deliveries, say), so the
# promise is exactness for what happens later, the case that occurs in practice.
later = st.lists(st.tuples(st.sampled_from(KINDS), st.integers(31, 60), st.booleans()), max_size=6)


def _purged_row(before: list[Fact]) -> models.Email:
    row = models.Email(
        tenant_id=1,
        subject="s",
        recipient="r@example.com",
        sent_at=T,
        tracking_id="t",
        status_changed_at=T,
        history_purged_at=T + timedelta(days=40),
    )
    for name, value in _projection_values(project(T, before)).items():
        setattr(row, name, value)
    return row


@settings(max_examples=400, deadline=None)
@given(histories, later)
def test_late_events_after_a_purge_give_the_full_historys_status(before_spec, late_spec) -> None:  # type: ignore[no-untyped-def]
    # given: a history, summarized on the row and purged
    before = [_fact("b", i, *spec) for i, spec in enumerate(before_spec)]
    late = [_fact("l", i, *spec) for i, spec in enumerate(late_spec)]
    row = _purged_row(before)
    # when: late events are projected with the row's summary
    resumed = project(T, [*baseline_facts(row), *late])
    full = project(T, [*before, *late])
    # then: what the API shows is the same as with the whole history
    assert (resumed.status, resumed.status_changed_at, resumed.delivered_at) == (
        full.status,
        full.status_changed_at,
        full.delivered_at,
    )
    assert resumed.opens.count == full.opens.count
    assert (resumed.opens.first_opened_at, resumed.opens.last_opened_at) == (
        full.opens.first_opened_at,
        full.opens.last_opened_at,
    )
    if full.failure is not None and resumed.failure is not None:
        assert resumed.failure.occurred_at == full.failure.occurred_at
    assert (resumed.failure is None) == (full.failure is None)
    assert resumed.complaint == full.complaint or (
        resumed.complaint is not None
        and full.complaint is not None
        and resumed.complaint.occurred_at == full.complaint.occurred_at
    )
