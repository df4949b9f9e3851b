"""The status projection: rules by example, then the order-independence property."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.enums import EmailStatus, FailureCategory
from gateway.status import Fact, project

T = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
S, D, F, O = EmailStatus.SENT, EmailStatus.DELIVERED, EmailStatus.DELIVERY_FAILED, EmailStatus.OPENED


def fact(status: EmailStatus, minutes: int, key: str | None = None, **extra: object) -> Fact:
    if status is F:
        extra.setdefault("failure_category", FailureCategory.HARD_BOUNCE)
        extra.setdefault("reason", "550 no such user")
    return Fact(
        key=key or f"{status.value}-{minutes}", status=status, occurred_at=T + timedelta(minutes=minutes), **extra
    )  # type: ignore[arg-type]


def status_of(*facts: Fact) -> EmailStatus:
    return project(T, facts).status


def test_no_events_is_sent_at_registration() -> None:
    # given / when
    result = project(T, [])
    # then
    assert result.status is S
    assert result.status_changed_at == T
    assert result.failure is None and result.delivered_at is None


def test_opened_outranks_delivered_and_sent_whatever_the_times() -> None:
    assert status_of(fact(O, 1), fact(D, 5), fact(S, 9)) is O


def test_delivered_outranks_sent() -> None:
    assert status_of(fact(D, 1), fact(S, 5)) is D


def test_failure_outranks_earlier_delivery_and_open() -> None:
    # a bounce reported after the e-mail was delivered and opened
    result = project(T, [fact(D, 1), fact(O, 2), fact(F, 10, failure_category=FailureCategory.BLOCKED)])
    assert result.status is F
    assert result.failure is not None and result.failure.category is FailureCategory.BLOCKED
    assert result.status_changed_at == T + timedelta(minutes=10)
    assert result.delivered_at == T + timedelta(minutes=1)


def complaint(minutes: int, key: str | None = None, recorded_as: EmailStatus = D) -> Fact:
    """A spam complaint: recorded as DELIVERED, or as DELIVERY_FAILED before migration 0004."""
    return Fact(
        key=key or f"C-{minutes}",
        status=recorded_as,
        occurred_at=T + timedelta(minutes=minutes),
        failure_category=FailureCategory.SPAM_COMPLAINT,
        reason="abuse",
    )


def test_a_complaint_keeps_the_status_the_delivery_gave_and_is_recorded() -> None:
    # given: a complaint after the e-mail was delivered and opened (recorded either way)
    for recorded_as in (D, F, S):
        # when
        result = project(T, [fact(D, 1), fact(O, 2), complaint(10, recorded_as=recorded_as)])
        # then
        assert (result.status, result.status_changed_at) == (O, T + timedelta(minutes=2))
        assert result.failure is None
        assert result.complaint is not None and result.complaint.occurred_at == T + timedelta(minutes=10)


def test_a_complaint_alone_proves_delivery() -> None:
    # given / when
    result = project(T, [complaint(7, recorded_as=F)])
    # then
    assert (result.status, result.status_changed_at, result.delivered_at) == (
        D,
        T + timedelta(minutes=7),
        T + timedelta(minutes=7),
    )
    assert result.failure is None


def test_the_first_complaint_gives_its_time() -> None:
    result = project(T, [fact(D, 1), complaint(20, "late"), complaint(9, "early")])
    assert result.status is D and result.status_changed_at == T + timedelta(minutes=1)
    assert result.complaint is not None and result.complaint.occurred_at == T + timedelta(minutes=9)


def test_delivery_after_failure_wins() -> None:
    # a soft bounce that the provider retried successfully
    result = project(T, [fact(F, 1, failure_category=FailureCategory.SOFT_BOUNCE), fact(D, 30)])
    assert result.status is D
    assert result.status_changed_at == T + timedelta(minutes=30)
    # the superseded failure is kept for the record (the API shows it only while failed)
    assert result.failure is not None and result.failure.category is FailureCategory.SOFT_BOUNCE


def test_open_after_failure_wins_and_its_time_is_the_first_such_open() -> None:
    result = project(T, [fact(F, 1), fact(O, 40, "o2"), fact(O, 20, "o1")])
    assert result.status is O
    assert result.status_changed_at == T + timedelta(minutes=20)


def test_same_instant_failure_beats_delivery_but_not_open() -> None:
    assert status_of(fact(D, 5), fact(F, 5)) is F
    assert status_of(fact(F, 5), fact(O, 5)) is O


def test_latest_failure_gives_the_summary() -> None:
    result = project(T, [fact(F, 1, "a", reason="first"), fact(F, 9, "b", reason="last", smtp_code=554)])
    assert result.failure is not None
    assert (result.failure.reason, result.failure.smtp_code) == ("last", 554)


def test_opens_are_counted_and_flagged_when_all_automated() -> None:
    mixed = project(T, [fact(O, 1, "a", automated=True), fact(O, 3, "b")])
    automated = project(T, [fact(O, 1, "a", automated=True), fact(O, 3, "b", automated=True)])
    assert (mixed.opens.count, mixed.opens.likely_automated) == (2, False)
    assert automated.opens.likely_automated is True
    assert mixed.opens.first_opened_at == T + timedelta(minutes=1)
    assert mixed.opens.last_opened_at == T + timedelta(minutes=3)


def test_duplicate_keys_count_once() -> None:
    result = project(T, [fact(O, 1, "same"), fact(O, 1, "same"), fact(O, 1, "same")])
    assert result.opens.count == 1


facts = st.one_of(
    st.builds(
        fact,
        st.sampled_from([S, D, F, O]),
        st.integers(min_value=0, max_value=20),
        st.text(alphabet="abcdef", min_size=1, max_size=3),
        automated=st.booleans(),
    ),
    st.builds(
        complaint,
        st.integers(min_value=0, max_value=20),
        st.text(alphabet="abcdef", min_size=1, max_size=3),
        st.sampled_from([D, F]),
    ),
)


def _is_complaint(e: Fact) -> bool:
    return e.failure_category is FailureCategory.SPAM_COMPLAINT


@settings(max_examples=300, deadline=None)
@given(st.lists(facts, max_size=12), st.randoms(use_true_random=False), st.integers(0, 3))
def test_any_order_and_any_duplicates_give_the_same_projection(
    events: list[Fact], rnd: random.Random, copies: int
) -> None:
    # given: the same events, shuffled, with some repeated
    baseline = project(T, events)
    shuffled = events + [rnd.choice(events) for _ in range(copies)] if events else []
    rnd.shuffle(shuffled)
    # when
    again = project(T, shuffled)
    # then: everything the API shows is the same
    assert again == baseline


@settings(max_examples=200, deadline=None)
@given(st.lists(facts, min_size=1, max_size=12))
def test_status_follows_the_rules(events: list[Fact]) -> None:
    result = project(T, events)
    # a complaint is a delivery, whatever it was recorded as
    recorded = [replace(e, status=D) if _is_complaint(e) else e for e in events]
    unique = {e.key: e for e in sorted(recorded, key=lambda e: e._identity, reverse=True)}.values()
    failures = [e for e in unique if e.status is F]
    positives = [e for e in unique if e.status in (D, O)]
    complaints = sorted((e for e in unique if _is_complaint(e)), key=lambda e: e.order)
    assert (result.complaint.occurred_at if result.complaint else None) == (
        complaints[0].occurred_at if complaints else None
    )
    assert result.failure is None or result.failure.category is not FailureCategory.SPAM_COMPLAINT
    if failures:
        last = max(failures, key=lambda e: e.order)
        later = [e for e in positives if e.order > last.order]
        expected = (O if any(e.status is O for e in later) else D) if later else F
    else:
        expected = O if any(e.status is O for e in positives) else D if positives else S
    assert result.status is expected
