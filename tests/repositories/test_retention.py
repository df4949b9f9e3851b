# mypy: disable-error-code="no-untyped-def"
"""The history purge: events go after the window, the status stays, batches stay small.

Times are relative to the real clock (the `now` fixture), not `T0`: the API's
`historyExpired` also compares with the clock, and a fixed date would drift out
of the window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from asgi_lifespan import LifespanManager
from conftest import make_settings
from factories import event, graphql_data, make_tenant, record, register, reload
from sqlalchemy import event as sa_event
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from waiting import eventually

from gateway import ingest, models
from gateway.app import create_app
from gateway.config import Settings
from gateway.db import SessionFactory, create_engine, create_session_factory
from gateway.enums import EmailStatus
from gateway.ids import encode_id
from gateway.migrations import upgrade
from gateway.repositories.emails import list_events_by_email_ids
from gateway.retention import PurgeReport, purge_history, purge_periodically
from gateway.status import Projection, project

DELIVERED, FAILED, OPENED = EmailStatus.DELIVERED, EmailStatus.DELIVERY_FAILED, EmailStatus.OPENED
DAYS = 30
SUMMARY = (
    "status",
    "status_changed_at",
    "delivered_at",
    "failure_category",
    "failure_reason",
    "failure_smtp_code",
    "failure_occurred_at",
    "open_count",
    "first_opened_at",
    "last_opened_at",
    "opens_likely_automated",
)

EMAIL_DETAILS = """
query EmailDetails($id: ID!) {
  email(id: $id) {
    emailStatus
    details {
      status history { status occurredAt } historyExpired historyAvailableUntil failure { reason }
    }
  }
}
"""


def minutes(email: models.Email, n: float) -> datetime:
    return email.sent_at + timedelta(minutes=n)


def summary(email: models.Email) -> dict[str, object]:
    return {name: getattr(email, name) for name in SUMMARY}


def expected_summary(p: Projection) -> dict[str, object]:
    return {
        "status": p.status,
        "status_changed_at": p.status_changed_at,
        "delivered_at": p.delivered_at,
        "failure_category": p.failure.category if p.failure else None,
        "failure_reason": p.failure.reason if p.failure else None,
        "failure_smtp_code": p.failure.smtp_code if p.failure else None,
        "failure_occurred_at": p.failure.occurred_at if p.failure else None,
        "open_count": p.opens.count,
        "first_opened_at": p.opens.first_opened_at,
        "last_opened_at": p.opens.last_opened_at,
        "opens_likely_automated": p.opens.likely_automated,
    }


async def history(factory: SessionFactory, email: models.Email) -> list[models.EmailEvent]:
    async with factory() as session:
        ids: list[int] = [email.id]  # type: ignore[list-item]
        return await list_events_by_email_ids(session=session, tenant_id=email.tenant_id, email_ids=ids)


DB_POLL = 0.02  # seconds between two looks at the database


def purged(factory: SessionFactory, email: models.Email) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await reload(factory, email)).history_purged_at is not None

    return check


async def purge(factory: SessionFactory, now: datetime, **options: int) -> PurgeReport:
    return await purge_history(
        session_factory=factory, history_days=options.pop("history_days", DAYS), now=now, **options
    )


@pytest.fixture
def now() -> datetime:
    return models.utcnow()


@pytest.fixture
def postgresql_only(settings: Settings) -> None:
    if settings.is_sqlite:
        pytest.skip("needs PostgreSQL: SQLite has no row locks (one writer at a time)")


# --- what is purged, what stays ---------------------------------------------------------------


async def test_old_emails_lose_their_events_but_keep_their_summary(session_factory, now):
    # given
    tenant = await make_tenant(session_factory)
    failed = await register(session_factory, tenant, sent_at=now - timedelta(days=DAYS + 10))
    failed = await record(
        session_factory,
        failed,
        event(DELIVERED, minutes(failed, 1)),
        event(FAILED, minutes(failed, 5)),
    )
    opened = await register(session_factory, tenant, sent_at=now - timedelta(days=DAYS, minutes=1))
    opened = await record(
        session_factory,
        opened,
        event(DELIVERED, minutes(opened, 1)),
        event(OPENED, minutes(opened, 2), machine_open=True),
        event(OPENED, minutes(opened, 3), machine_open=True),
    )
    young = await register(session_factory, tenant, sent_at=now - timedelta(days=DAYS - 1))
    young = await record(session_factory, young, event(DELIVERED, minutes(young, 1)))
    before = {e.id: summary(e) for e in (failed, opened, young)}
    # when
    report = await purge(session_factory, now)
    # then
    assert (report.emails, report.events, report.email_batches) == (2, 5, 1)
    failed, opened, young = [await reload(session_factory, e) for e in (failed, opened, young)]
    for email in (failed, opened):
        assert await history(session_factory, email) == []
        assert email.history_purged_at == now
        assert summary(email) == before[email.id]
    assert failed.status is FAILED
    assert failed.failure_reason == "550 5.1.1 no such user"
    assert failed.failure_smtp_code == 550
    assert failed.failure_category is not None
    assert failed.delivered_at == minutes(failed, 1)
    assert failed.status_changed_at == minutes(failed, 5)
    assert opened.status is OPENED
    assert opened.open_count == 2
    assert opened.opens_likely_automated
    assert (opened.first_opened_at, opened.last_opened_at) == (
        minutes(opened, 2),
        minutes(opened, 3),
    )
    assert young.history_purged_at is None
    assert [e.status for e in await history(session_factory, young)] == [DELIVERED]
    assert summary(young) == before[young.id]


async def test_the_api_shows_an_empty_expired_history_once_purged(schema, make_context, session_factory, now):
    # given: purged with a window shorter than the API's: historyExpired comes from the purge
    tenant = await make_tenant(session_factory)
    purged_email = await register(session_factory, tenant, sent_at=now - timedelta(days=5))
    await record(
        session_factory,
        purged_email,
        event(DELIVERED, minutes(purged_email, 1)),
        event(FAILED, minutes(purged_email, 2)),
    )
    young = await register(session_factory, tenant, sent_at=now - timedelta(days=1))
    await record(
        session_factory,
        young,
        event(DELIVERED, minutes(young, 1)),
        event(OPENED, minutes(young, 2)),
    )
    await purge(session_factory, now, history_days=3)

    async def details(email: models.Email) -> dict:  # type: ignore[type-arg]
        result = await schema.execute(
            EMAIL_DETAILS,
            variable_values={"id": encode_id("Email", email.id)},  # type: ignore[arg-type]
            context_value=make_context(tenant.principal),
        )
        return graphql_data(result)["email"]  # type: ignore[no-any-return]

    # when
    old_view, young_view = await details(purged_email), await details(young)
    # then
    assert old_view["emailStatus"] == "DELIVERY_FAILED"
    assert old_view["details"]["history"] == []
    assert old_view["details"]["historyExpired"] is True
    assert old_view["details"]["historyAvailableUntil"] == (purged_email.sent_at + timedelta(days=DAYS)).isoformat()
    assert old_view["details"]["failure"] == {"reason": "550 5.1.1 no such user"}
    assert young_view["emailStatus"] == "OPENED"
    assert [h["status"] for h in young_view["details"]["history"]] == ["DELIVERED", "OPENED"]
    assert young_view["details"]["historyExpired"] is False
    assert young_view["details"]["failure"] is None


# --- batches ---------------------------------------------------------------------------------


def _in_list_size(statement: str) -> int:
    found = re.search(r"email_id IN \(([^)]*)\)", statement)
    assert found, f"no IN list in {statement!r}"
    return len(found.group(1).split(","))


async def test_batches_are_bounded(session_factory, count_statements, now):
    # given
    tenant = await make_tenant(session_factory)
    for i in range(5):
        email = await register(session_factory, tenant, sent_at=now - timedelta(days=DAYS + 1, minutes=i))
        await record(
            session_factory,
            email,
            event(DELIVERED, minutes(email, 1)),
            event(OPENED, minutes(email, 2)),
        )
    # when
    with count_statements as counter:
        report = await purge(session_factory, now, batch_size=2)
    # then
    assert (report.emails, report.events, report.email_batches) == (5, 10, 3)
    deletes = [s for s in counter.statements if s.lstrip().upper().startswith("DELETE FROM EMAIL_EVENT")]
    assert [_in_list_size(s) for s in deletes] == [2, 2, 1]


async def test_a_second_run_purges_nothing(session_factory, now):
    # given
    tenant = await make_tenant(session_factory)
    for _ in range(3):
        email = await register(session_factory, tenant, sent_at=now - timedelta(days=DAYS + 2))
        await record(session_factory, email, event(DELIVERED, minutes(email, 1)))
    first = await purge(session_factory, now, batch_size=2)
    # when
    second = await purge(session_factory, now + timedelta(minutes=5), batch_size=2)
    # then
    assert (first.emails, first.events) == (3, 3)
    assert second == PurgeReport()
    assert not second.anything


async def test_other_tenants_are_purged_too(session_factory, now):
    # given
    emails = []
    for _ in range(3):
        tenant = await make_tenant(session_factory)
        email = await register(session_factory, tenant, sent_at=now - timedelta(days=DAYS + 2))
        emails.append(await record(session_factory, email, event(DELIVERED, minutes(email, 1))))
    # when
    report = await purge(session_factory, now)
    # then
    assert (report.emails, report.events) == (3, 3)
    for email in emails:
        assert (await reload(session_factory, email)).history_purged_at == now


# --- late events ------------------------------------------------------------------------------

# (status, minutes after sending, machine open) before the purge; the late events after it.
LATE_EVENTS = [
    pytest.param(
        [(DELIVERED, 2, False), (FAILED, 5, False)],
        [(DELIVERED, 1, False)],
        FAILED,
        id="a delivery that occurred before the recorded failure",
    ),
    pytest.param(
        [(DELIVERED, 2, False), (FAILED, 5, False)],
        [(DELIVERED, 1, False), (OPENED, 9, False)],
        OPENED,
        id="a delivery before the failure and a new open after it",
    ),
    pytest.param(
        [(DELIVERED, 1, False), (OPENED, 2, True), (OPENED, 3, True)],
        [(OPENED, 20, False)],
        OPENED,
        id="a third open, by a person",
    ),
    pytest.param(
        [(OPENED, 1, False), (FAILED, 2, False), (OPENED, 3, False), (OPENED, 4, False)],
        [(OPENED, 5, False)],
        OPENED,
        id="a new open after a failure that later opens superseded",
    ),
]


@pytest.mark.parametrize(("before", "later", "status"), LATE_EVENTS)
async def test_late_events_after_the_purge_give_the_status_of_the_full_history(
    session_factory, now, before, later, status
):
    # given: an old e-mail whose full history is known, then purged
    tenant = await make_tenant(session_factory)
    email = await register(session_factory, tenant, sent_at=now - timedelta(days=DAYS + 3))
    await record(session_factory, email, *(event(s, minutes(email, m), machine_open=a) for s, m, a in before))
    full = [ingest.fact_of(row) for row in await history(session_factory, email)]
    await purge(session_factory, now)
    late = [event(s, minutes(email, m), machine_open=a) for s, m, a in later]
    # when
    await record(session_factory, email, *late)
    # then: the same as if the history had never been purged
    after = await reload(session_factory, email)
    recorded = await history(session_factory, email)
    assert sorted(r.event_key for r in recorded) == sorted(e.key for e in late)
    expected = project(email.sent_at, [*full, *(ingest.fact_of(r) for r in recorded)])
    assert expected.status is status
    assert summary(after) == expected_summary(expected)


# --- pending events and nonces ----------------------------------------------------------------


async def test_expired_pending_events_and_old_nonces_are_deleted(session_factory, now):
    # given
    async with session_factory() as session:
        session.add_all(
            [
                models.PendingEvent(
                    source="sendgrid",
                    event_key=f"old-{i}",
                    payload="{}",
                    expires_at=now - timedelta(minutes=i + 1),
                )
                for i in range(3)
            ]
            + [
                models.PendingEvent(
                    source="sendgrid",
                    event_key="fresh",
                    payload="{}",
                    expires_at=now + timedelta(hours=1),
                )
            ]
            + [
                models.WebhookNonce(
                    source="mailgun",
                    token=f"old-{i}",
                    body_hash="0" * 64,
                    seen_at=now - timedelta(days=1, minutes=i + 1),
                )
                for i in range(3)
            ]
            + [
                models.WebhookNonce(
                    source="mailgun",
                    token="fresh",
                    body_hash="0" * 64,
                    seen_at=now - timedelta(hours=23),
                )
            ]
        )
        await session.commit()
    # when
    report = await purge(session_factory, now, batch_size=2)
    # then
    assert (report.pending_events, report.nonces, report.emails) == (3, 3, 0)
    async with session_factory() as session:
        pending = (await session.execute(select(models.PendingEvent.event_key))).scalars().all()
        nonces = (await session.execute(select(models.WebhookNonce.token))).scalars().all()
    assert pending == ["fresh"]
    assert nonces == ["fresh"]


# --- concurrency ------------------------------------------------------------------------------


@contextlib.contextmanager
def _writes(engine: AsyncEngine) -> Iterator[asyncio.Event]:
    """An event set when a session sends its first write from now on."""
    wrote = asyncio.Event()

    def seen(_conn, _cursor, statement: str, *_args) -> None:  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            wrote.set()

    sa_event.listen(engine.sync_engine, "before_cursor_execute", seen)
    try:
        yield wrote
    finally:
        sa_event.remove(engine.sync_engine, "before_cursor_execute", seen)


async def _wait_for_a_lock_wait(engine: AsyncEngine, wrote: asyncio.Event) -> None:
    """Until another session waits on a row lock (PostgreSQL), or asks for the write lock (SQLite).

    SQLite has no row locks and no view of its waiters: the ingestion's first write is
    where it waits for the purge's write lock. The purge may commit just before that
    write reaches SQLite, and then the ingestion does not wait: both orders are valid.
    """
    if engine.dialect.name != "postgresql":
        await asyncio.wait_for(wrote.wait(), timeout=60)
        return

    async def waiting() -> bool:
        async with engine.connect() as connection:
            found = await connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
            return int(found.scalar_one()) > 0

    await eventually(waiting, what="the ingestion waiting on the purge's row lock", every=DB_POLL)


async def test_an_event_ingested_while_its_email_is_being_purged_is_kept(session_factory, engine, now):
    # given: a purge that has locked, marked and emptied its batch, and waits before committing
    tenant = await make_tenant(session_factory)
    email = await register(session_factory, tenant, sent_at=now - timedelta(days=DAYS + 1))
    await record(
        session_factory,
        email,
        event(DELIVERED, minutes(email, 1)),
        event(FAILED, minutes(email, 2)),
    )
    full = [ingest.fact_of(row) for row in await history(session_factory, email)]
    holding, release = asyncio.Event(), asyncio.Event()

    def gated_sessions():
        session = session_factory()
        commit = session.commit

        async def commit_when_released() -> None:
            holding.set()
            await release.wait()
            await commit()

        session.commit = commit_when_released  # type: ignore[method-assign]
        return session

    purging = asyncio.create_task(purge_history(session_factory=gated_sessions, history_days=DAYS, now=now))
    await asyncio.wait_for(holding.wait(), timeout=60)
    # when: an open arrives for it, and the purge commits while the ingestion waits for the row
    late = event(OPENED, minutes(email, 30))
    with _writes(engine) as wrote:  # the purge waits at its commit: any write now is the ingestion's
        ingesting = asyncio.create_task(record(session_factory, email, late))
        await _wait_for_a_lock_wait(engine, wrote)
    release.set()
    report = await asyncio.wait_for(purging, timeout=60)
    await asyncio.wait_for(ingesting, timeout=60)
    # then: the purge took the two old events; the open is recorded after it and counted
    assert (report.emails, report.events) == (1, 2)
    after = await reload(session_factory, email)
    recorded = await history(session_factory, email)
    assert [r.event_key for r in recorded] == [late.key]
    assert after.history_purged_at == now
    assert summary(after) == expected_summary(project(email.sent_at, [*full, ingest.fact_of(recorded[0])]))
    assert after.status is OPENED
    assert after.delivered_at == minutes(email, 1)


async def test_a_purge_skips_an_email_being_ingested_instead_of_waiting(session_factory, postgresql_only, now):
    # given: an ingestion holds the row lock of one old e-mail (event written, not committed)
    tenant = await make_tenant(session_factory)
    busy = await register(session_factory, tenant, sent_at=now - timedelta(days=DAYS + 1))
    busy = await record(session_factory, busy, event(DELIVERED, minutes(busy, 1)))
    idle = await register(session_factory, tenant, sent_at=now - timedelta(days=DAYS + 1))
    late = event(OPENED, minutes(busy, 10))
    async with session_factory() as ingestion:
        await ingest.apply_events(session=ingestion, events=[(busy, late)])
        # when
        during = await asyncio.wait_for(purge(session_factory, now), timeout=60)
        await ingestion.commit()
    after = await purge(session_factory, now + timedelta(minutes=1))
    # then
    assert (during.emails, after.emails) == (1, 1)
    assert (await reload(session_factory, idle)).history_purged_at == now
    busy_after = await reload(session_factory, busy)
    assert busy_after.history_purged_at == now + timedelta(minutes=1)
    assert busy_after.status is OPENED
    assert busy_after.delivered_at == minutes(busy, 1)
    assert await history(session_factory, busy) == []


async def test_a_purge_batch_is_picked_and_locked_once_per_statement(session_factory, postgresql_only, now):
    # On small or fresh tables the planner runs an IN (subquery) on the inner side of a
    # nested loop, once per outer row. With LIMIT ... FOR UPDATE SKIP LOCKED, each run
    # could lock other rows, left locked and unmarked: two purges at once then both
    # skipped them (the race test below caught it about once in a few hundred runs).
    # given: the statements of a batch, on the tables as the tests leave them
    from sqlalchemy.dialects import postgresql

    from gateway.repositories.retention import _delete_in_batches_statement, _mark_batch

    statements = [
        _mark_batch(tenant_id=1, cutoff=now, now=now, after=None, size=3),
        _mark_batch(tenant_id=1, cutoff=now, now=now, after=(now, 1), size=3),
        _delete_in_batches_statement(models.PendingEvent.__table__, models.PendingEvent.expires_at < now, 3),  # type: ignore[attr-defined,arg-type]
    ]
    for statement in statements:
        sql = str(statement.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
        # when
        async with session_factory() as session:
            plan = "\n".join((await session.execute(text(f"EXPLAIN {sql}"))).scalars())
            await session.rollback()
        # then: the locking scan runs once, as the CTE, and nothing else locks
        assert plan.count("LockRows") == 1, plan
        before_lock = plan.split("LockRows")[0]
        assert "CTE batch" in before_lock and "Nested Loop" not in before_lock and "SubPlan" not in before_lock, plan


async def test_two_purges_at_once_purge_every_old_email_exactly_once(session_factory, postgresql_only, now):
    # given
    old: list[models.Email] = []
    for _ in range(2):
        tenant = await make_tenant(session_factory)
        for i in range(12):
            email = await register(session_factory, tenant, sent_at=now - timedelta(days=DAYS + 1, minutes=i))
            old.append(await record(session_factory, email, event(DELIVERED, minutes(email, 1))))
        young = await register(session_factory, tenant, sent_at=now - timedelta(days=1))
    # when
    reports = await asyncio.wait_for(
        asyncio.gather(purge(session_factory, now, batch_size=3), purge(session_factory, now, batch_size=3)),
        timeout=120,
    )
    # then
    assert sum(r.emails for r in reports) == len(old)
    assert sum(r.events for r in reports) == len(old)
    for email in old:
        assert (await reload(session_factory, email)).history_purged_at == now
    assert (await reload(session_factory, young)).history_purged_at is None


# --- the periodic job and the app -------------------------------------------------------------


async def test_purge_periodically_survives_a_failure_runs_again_and_stops_on_cancel(
    session_factory, settings, now, caplog
):
    # given: a database that is down for the first run
    caplog.set_level(logging.WARNING, logger="gateway.retention")
    tenant = await make_tenant(session_factory)
    first = await register(session_factory, tenant, sent_at=now - timedelta(days=settings.history_days + 1))
    calls = 0

    def flaky_sessions():
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionRefusedError("the database is down")
        return session_factory()

    # when
    task = asyncio.create_task(purge_periodically(session_factory=flaky_sessions, settings=settings, interval=0.01))
    try:
        await eventually(purged(session_factory, first), what="the first e-mail purged", every=DB_POLL)
        second = await register(session_factory, tenant, sent_at=now - timedelta(days=settings.history_days + 1))
        await eventually(purged(session_factory, second), what="the second e-mail purged", every=DB_POLL)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    # then
    assert task.cancelled()
    assert any("history purge failed" in r.getMessage() and r.exc_info for r in caplog.records)


async def test_purge_periodically_refuses_a_zero_interval(session_factory, settings):
    # when / then
    with pytest.raises(ValueError, match="interval must be positive, got 0"):
        await purge_periodically(session_factory=session_factory, settings=settings, interval=0)


def _purge_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if getattr(t.get_coro(), "__qualname__", "") == "purge_periodically"]


async def test_the_app_runs_the_purge_in_the_background_and_stops_it(settings, session_factory, now):
    # given
    tenant = await make_tenant(session_factory)
    email = await register(session_factory, tenant, sent_at=now - timedelta(days=settings.history_days + 1))
    app = create_app(make_settings(settings.database_url, settings.data_dir, purge_interval_seconds=3600))
    # when
    async with LifespanManager(app):
        running = _purge_tasks()
        await eventually(purged(session_factory, email), what="the old e-mail purged", every=DB_POLL)
    # then
    assert len(running) == 1
    assert running[0].cancelled()
    assert _purge_tasks() == []


async def test_the_app_runs_no_purge_when_the_interval_is_zero(settings, session_factory):
    # given
    app = create_app(make_settings(settings.database_url, settings.data_dir, purge_interval_seconds=0))
    # when
    async with LifespanManager(app):
        running = _purge_tasks()
    # then
    assert running == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"history_days": 0}, "history_days must be at least 1, got 0"),
        ({"batch_size": 0}, "batch_size must be at least 1, got 0"),
    ],
)
async def test_bad_arguments_are_refused(options, message):
    # given
    def no_sessions():
        raise AssertionError("no database access expected")

    arguments = {"history_days": DAYS, "batch_size": 10, **options}
    # when / then
    with pytest.raises(ValueError, match=message):
        await purge_history(session_factory=no_sessions, now=models.utcnow(), **arguments)  # type: ignore[arg-type]


async def test_a_naive_now_is_refused():
    # when / then
    with pytest.raises(ValueError, match="aware UTC datetime"):
        await purge_history(session_factory=None, history_days=DAYS, now=datetime(2026, 1, 1))  # type: ignore[arg-type]  # noqa: DTZ001


# --- the command ------------------------------------------------------------------------------


def _env(tmp_path: Path, **variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_DATA_DIR"] = str(tmp_path / "data")
    env.update(variables)
    return env


async def _gateway(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gateway.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


async def test_the_command_purges_a_sqlite_file_and_prints_counts(tmp_path):
    # given: a migrated SQLite file with one e-mail older than a day and one younger
    url = f"sqlite+aiosqlite:///{tmp_path / 'purge.db'}"
    settings = make_settings(url, tmp_path / "probe")
    await asyncio.to_thread(upgrade, settings)
    engine = create_engine(settings)
    try:
        factory = create_session_factory(engine)
        tenant = await make_tenant(factory)
        now = models.utcnow()
        old = await register(factory, tenant, sent_at=now - timedelta(days=3))
        await record(factory, old, event(DELIVERED, minutes(old, 1)), event(OPENED, minutes(old, 2)))
        young = await register(factory, tenant, sent_at=now - timedelta(hours=2))
        await record(factory, young, event(DELIVERED, minutes(young, 1)))
        # when
        run = await _gateway(
            "purge-history",
            "--days",
            "1",
            "--batch-size",
            "10",
            cwd=tmp_path,
            env=_env(tmp_path, GATEWAY_DATABASE_URL=url),
        )
        # then
        assert run.returncode == 0, run.stderr
        assert "purged the history of 1 e-mails (2 events), 0 expired pending events, 0 webhook nonces" in run.stdout
        assert "kept 1 days" in run.stdout
        old_after, young_after = await reload(factory, old), await reload(factory, young)
        assert old_after.history_purged_at is not None
        assert old_after.status is OPENED
        assert await history(factory, old) == []
        assert young_after.history_purged_at is None
        assert len(await history(factory, young)) == 1
    finally:
        await engine.dispose()


async def test_the_command_documents_its_options_and_refuses_a_zero_batch(tmp_path):
    # given
    env = _env(tmp_path)
    # when
    helped = await _gateway("purge-history", "--help", cwd=tmp_path, env=env)
    refused = await _gateway("purge-history", "--batch-size", "0", cwd=tmp_path, env=env)
    # then
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: gateway purge-history")
    assert "--days" in helped.stdout
    assert "--batch-size" in helped.stdout
    assert refused.returncode == 2
    assert "must be at least 1, got 0" in refused.stderr
    assert not (tmp_path / "data").exists()  # refused before touching any database
