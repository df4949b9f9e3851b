"""Webhook ingestion benchmark: SendGrid Event Webhook batches into a real `gateway serve`.

Honest by construction: real HTTP (httpx, keep-alive) to a real uvicorn process
started with `gateway serve`, real ECDSA P-256 signatures made just before each
request, a real database (a fresh SQLite file, or a fresh PostgreSQL database
`gateway_bench_<pid>` on 127.0.0.1:5432). Every answer must be 200 with the
expected counts, and at the end the database must hold exactly the unique events
sent, each on the e-mail it was meant for. It is a script, not a test: nothing
here asserts a speed.

    .venv/bin/python -m bench.ingest --help
    .venv/bin/python -m bench.ingest                      # both databases, defaults
    .venv/bin/python -m bench.ingest --database postgresql --rounds 3
    .venv/bin/python -m bench.ingest --database postgresql --profile cprofile

See bench/README.md for what is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import functools
import json
import os
import random
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/ingest.py` (the profiled servers) puts bench/ on the path
    sys.path.append(str(ROOT))  # last: an installed or PYTHONPATH gateway comes first

# After the path set-up above:
from bench.harness import databases  # noqa: E402
from bench.harness.cpu import CpuWindow  # noqa: E402
from bench.harness.pyspy import PySpy  # noqa: E402
from bench.harness.sendgrid import FILTER_SUFFIX, key_pair, signed_headers  # noqa: E402
from bench.harness.servers import BenchError, Server, free_port, gateway_command, gateway_env, run  # noqa: E402
from bench.harness.stats import Spread, percentile  # noqa: E402

DUPLICATE_SHARE = 0.02  # events SendGrid sends again (retries): same sg_event_id
UNKNOWN_SHARE = 0.02  # events for messages not registered (yet): kept pending
REGISTER_BATCH = 1000
_PROFILED_SERVE = "_serve-under-cprofile"
_PHASED_SERVE = "_serve-with-phase-timers"

# The mix of a real SendGrid account's event stream (processed/delivered per
# message, opens and clicks for some, a few deferrals, bounces and drops).
EVENT_MIX: list[tuple[str, float]] = [
    ("processed", 0.24),
    ("delivered", 0.24),
    ("open", 0.22),
    ("click", 0.08),
    ("deferred", 0.08),
    ("bounce", 0.07),
    ("dropped", 0.05),
    ("spamreport", 0.02),
]
USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Outlook/16.0",
    "Mozilla/5.0",
]
BOUNCES = [  # (type, reason, status, bounce_classification)
    (
        "bounce",
        "550 5.1.1 The email account that you tried to reach does not exist",
        "5.1.1",
        "Invalid Address",
    ),
    ("bounce", "552 5.2.2 Mailbox full", "5.2.2", "Mailbox Unavailable"),
    (
        "blocked",
        "554 5.7.1 Service unavailable; client host blocked using Spamhaus",
        "5.7.1",
        "Reputation",
    ),
    ("bounce", "500 unknown recipient", "5.0.0", "Technical Failure"),
]
DEFERRALS = [
    "421 4.7.0 Try again later",
    "450 4.2.1 Mailbox busy, try again later",
    "451 4.3.0 Temporary failure",
]
DROPS = [
    ("Bounced Address", "5.0.0"),
    ("Unsubscribed Address", "5.0.0"),
    ("Spam Reporting Address", "5.0.0"),
]


# --- what is sent -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Registered:
    pk: int
    global_id: str  # gateway.ids.encode_id("Email", pk): the gateway_email_id custom argument
    message_id: str  # the X-Message-Id SendGrid's send API returned
    recipient: str
    sent_at: int  # Unix seconds


@dataclass(slots=True)
class Batch:
    """A batch and the answer it must get.

    `applied` follows the gateway's documented definition (README, "Webhooks"):
    events recorded for the first time, so a retry of an event already recorded
    counts 0. `pending` counts every event for an unknown message, retries too:
    the gateway keeps each of them pending (once per key) and counts them all.

    With overlapping retries, an event sent again while the batch that first carried
    it is still in flight is `contested`: whichever of the two batches commits first
    records it. Such a batch's `applied` is then only known within
    [applied - originals contested, applied - originals contested + len(contested)];
    the sum over the round stays exact.
    """

    body: bytes
    events: int
    applied: int  # first sendings of events for registered e-mails
    pending: int  # events for unknown messages, retries included
    contested: set[str] = field(default_factory=set)  # sg_event_ids raced by another batch in flight
    contested_originals: int = 0  # of `applied`, those a retry in flight may record first

    def applied_range(self) -> tuple[int, int]:
        low = self.applied - self.contested_originals
        return low, low + len(self.contested)


@dataclass(slots=True)
class Ledger:
    """Every unique event sent, to check the database at the end."""

    known: dict[str, int] = field(default_factory=dict)  # sg_event_id -> e-mail pk
    unknown: set[str] = field(default_factory=set)
    sent: int = 0
    duplicates: int = 0


class EventFactory:
    """Batches in SendGrid's Event Webhook format, matched half by sg_message_id and half
    by the gateway_email_id custom argument, with retried duplicates and unknown messages.

    A duplicate is an event SendGrid sent before: by default one from a batch already
    answered 200 (`acknowledge`), the usual case of a retry. With `overlapping=True` it
    may come from a batch of the same round, still in flight: a retry that overlaps the
    original request.
    """

    def __init__(self, emails: Sequence[Registered], rng: random.Random, ledger: Ledger, overlapping: bool) -> None:
        self.emails = emails
        self.rng = rng
        self.ledger = ledger
        self.overlapping = overlapping
        self.kinds = [k for k, _ in EVENT_MIX]
        self.weights = [w for _, w in EVENT_MIX]
        self.recent: list[tuple[dict[str, Any], int | None]] = []  # events that may be sent again
        self.unacknowledged: list[tuple[dict[str, Any], int | None]] = []
        self.in_flight: dict[str, Batch] = {}  # sg_event_id -> the batch that first sent it, not answered yet

    def _event_id(self) -> str:
        return base64.b64encode(secrets.token_bytes(16)).decode()  # like "rbtnWrG1DVDGGGFHFyun0A=="

    def _event(self, kind: str, email: Registered | None, by_custom_arg: bool) -> dict[str, Any]:
        rng = self.rng
        if email is None:  # a message this gateway never registered (another app, or not yet)
            message_id = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
            recipient, sent_at = (
                f"someone{rng.randrange(10**6)}@example.org",
                int(time.time()) - 600,
            )
        else:
            message_id, recipient, sent_at = email.message_id, email.recipient, email.sent_at
        event: dict[str, Any] = {
            "email": recipient,
            "timestamp": sent_at + rng.randint(1, 3600),
            "smtp-id": f"<{message_id}@ismtpd0001p1lon1.sendgrid.net>",
            "event": kind,
            "category": ["invoices"],
            "sg_event_id": self._event_id(),
            "sg_message_id": message_id + FILTER_SUFFIX,
        }
        if by_custom_arg and email is not None:
            event["gateway_email_id"] = email.global_id  # custom args are top-level keys
        if kind == "processed":
            event["pool"] = {"name": "transactional", "id": 210}
        elif kind == "delivered":
            event.update(response="250 2.0.0 OK  1714564800 d9-20020a05600c", tls=1, ip="149.72.123.24")
        elif kind == "open":
            machine = rng.random() < 0.35
            event.update(
                useragent="Mozilla/5.0" if machine else rng.choice(USER_AGENTS),
                ip="66.249.84.2" if machine else "82.94.12.7",
                sg_machine_open=machine,
            )
        elif kind == "click":
            event.update(
                useragent=rng.choice(USER_AGENTS),
                ip="82.94.12.7",
                url="https://portal.example.com/invoices/2026-000123",
                url_offset={"index": 0, "type": "html"},
            )
        elif kind == "deferred":
            event.update(
                response=rng.choice(DEFERRALS),
                attempt=str(rng.randint(1, 5)),
                ip="149.72.123.24",
                tls=1,
            )
        elif kind == "bounce":
            kind_, reason, status, classification = rng.choice(BOUNCES)
            event.update(
                type=kind_,
                reason=reason,
                status=status,
                bounce_classification=classification,
                tls=1,
            )
        elif kind == "dropped":
            reason, status = rng.choice(DROPS)
            event.update(reason=reason, status=status)
        return event

    def batch(self, size: int) -> Batch:
        rng, ledger = self.rng, self.ledger
        events: list[dict[str, Any]] = []
        applied = pending = 0
        contested: set[str] = set()
        raced: list[tuple[Batch, str]] = []
        for kind in rng.choices(self.kinds, self.weights, k=size):
            roll = rng.random()
            if roll < DUPLICATE_SHARE and self.recent:
                event, pk = rng.choice(self.recent)  # a retry: the very same event again
                ledger.duplicates += 1
                if pk is None:
                    pending += 1  # kept pending again (the same row): counted as pending
                elif (original := self.in_flight.get(event["sg_event_id"])) is not None:
                    contested.add(event["sg_event_id"])  # this batch or the original records it
                    raced.append((original, event["sg_event_id"]))
                # else: already recorded, so not applied again (README: "a provider's retry
                # answers applied: 0"); the bench once counted it, and failed on every retry.
                events.append(event)
                continue
            if roll < DUPLICATE_SHARE + UNKNOWN_SHARE:
                event, pk = self._event(kind, None, False), None
                ledger.unknown.add(event["sg_event_id"])
            else:
                email = rng.choice(self.emails)
                event, pk = self._event(kind, email, by_custom_arg=rng.random() < 0.5), email.pk
                ledger.known[event["sg_event_id"]] = email.pk
            if pk is None:
                pending += 1
            else:
                applied += 1
            events.append(event)
            self.unacknowledged.append((event, pk))
        batch = Batch(body=orjson.dumps(events), events=size, applied=applied, pending=pending, contested=contested)
        for original, event_id in raced:
            if event_id not in original.contested:
                original.contested.add(event_id)
                original.contested_originals += 1
        if self.overlapping:
            for event, pk in self.unacknowledged:
                if pk is not None:
                    self.in_flight[event["sg_event_id"]] = batch
            self._retryable()
        ledger.sent += size
        return batch

    def acknowledge(self) -> None:
        """The batches made so far were answered 200: their events may now be retried, and
        a retry of them records nothing."""
        self._retryable()
        self.in_flight.clear()

    def _retryable(self) -> None:
        for item in self.unacknowledged:
            if len(self.recent) < 5000:
                self.recent.append(item)
            else:
                self.recent[self.rng.randrange(5000)] = item
        self.unacknowledged.clear()


def settings_from(env: dict[str, str]) -> Any:
    from gateway.config import Settings

    return Settings(
        database_url=env["GATEWAY_DATABASE_URL"],
        data_dir=Path(env["GATEWAY_DATA_DIR"]),
        secret_key=env["GATEWAY_SECRET_KEY"],
    )


async def register_emails(
    settings: Any, count: int, rng: random.Random, concurrency: int = 1, after_first: Any = None
) -> list[Registered]:
    """Register `count` e-mails through the gateway's own code, one transaction per batch
    (register_email + write_first_statuses, as gateway/demo.py does), `concurrency`
    batches at a time (PostgreSQL; SQLite has one writer anyway). `after_first` (a
    coroutine function) runs once the first batch is committed: ANALYZE on PostgreSQL."""
    from gateway.db import create_engine, create_session_factory
    from gateway.ids import encode_id
    from gateway.ingest import write_first_statuses
    from gateway.repositories.api_keys import get_or_create_tenant
    from gateway.repositories.registration import Registration, register_email

    engine = create_engine(settings)
    factory = create_session_factory(engine)
    now = datetime.now(UTC)
    registered: list[Registered] = []
    registrations = [
        Registration(
            external_id=f"bench-{n:07d}",
            subject=f"Factuur 2026-{n:06d}",
            recipient=f"client{n}@example.com",
            sent_at=now - timedelta(seconds=rng.randint(600, 2 * 86_400)),
            provider_message_id=base64.urlsafe_b64encode(rng.randbytes(16)).decode().rstrip("="),
        )
        for n in range(count)
    ]
    starts = iter(range(0, count, REGISTER_BATCH))

    async def register_batch(tenant_id: int, start: int) -> None:
        async with factory() as session:
            batch = []
            for data in registrations[start : start + REGISTER_BATCH]:
                email, created = await register_email(session=session, tenant_id=tenant_id, data=data)
                if not created:
                    raise BenchError(f"e-mail {data.external_id} already existed in a fresh database")
                batch.append(email)
            await write_first_statuses(session=session, emails=batch)
            await session.commit()
        registered.extend(
            Registered(
                e.id,
                encode_id("Email", e.id),
                e.provider_message_id,
                e.recipient,
                int(e.sent_at.timestamp()),
            )
            for e in batch
        )

    async def worker(tenant_id: int) -> None:
        for start in starts:
            await register_batch(tenant_id, start)

    try:
        async with factory() as session:
            tenant = await get_or_create_tenant(session=session, name="Bench Accountants")
            await session.commit()
            tenant_id = tenant.id
        if after_first is not None and (first := next(starts, None)) is not None:
            await register_batch(tenant_id, first)
            await after_first()
        await asyncio.gather(*(worker(tenant_id) for _ in range(concurrency)))
    finally:
        await engine.dispose()
    registered.sort(key=lambda e: e.pk)
    return registered


async def check_database(settings: Any, ledger: Ledger) -> list[str]:
    """Nothing lost, nothing doubled, nothing on the wrong e-mail. Returns the problems."""
    from sqlalchemy import func, select

    from gateway import models
    from gateway.db import create_engine, create_session_factory

    engine = create_engine(settings)
    problems: list[str] = []
    try:
        async with create_session_factory(engine)() as session:
            ev, pe = models.EmailEvent, models.PendingEvent
            rows = (await session.execute(select(ev.event_key, ev.email_id))).all()
            pending = set((await session.execute(select(pe.event_key))).scalars())
            total_pending = (await session.execute(select(func.count()).select_from(pe))).scalar_one()
    finally:
        await engine.dispose()
    stored: dict[str, int] = {}
    doubled = 0
    for key, email_id in rows:
        if key in stored:
            doubled += 1
        stored[key] = email_id
    lost = set(ledger.known) - set(stored)
    extra = set(stored) - set(ledger.known)
    misplaced = sum(1 for key, pk in ledger.known.items() if key in stored and stored[key] != pk)
    print(
        f"  check: {len(rows):,} event rows for {len(ledger.known):,} unique events sent "
        f"for known e-mails ({ledger.duplicates:,} duplicates sent); {total_pending:,} pending "
        f"rows for {len(ledger.unknown):,} "
        "unique events for unknown messages"
    )
    if len(rows) != len(ledger.known):
        problems.append(f"{len(rows)} event rows, expected {len(ledger.known)}")
    if lost:
        problems.append(f"{len(lost)} events lost, e.g. {sorted(lost)[:3]}")
    if doubled:
        problems.append(f"{doubled} events recorded twice")
    if extra:
        problems.append(f"{len(extra)} event rows nobody sent, e.g. {sorted(extra)[:3]}")
    if misplaced:
        problems.append(f"{misplaced} events recorded on another e-mail than the one they were for")
    if pending != ledger.unknown or total_pending != len(ledger.unknown):
        problems.append(f"{total_pending} pending rows ({len(pending)} keys), expected {len(ledger.unknown)}")
    return problems


# --- posting ------------------------------------------------------------------


@dataclass(slots=True)
class RoundResult:
    events: int
    seconds: float
    latencies: list[float]
    server_cpu: float
    client_cpu: float
    pg_cpu: float | None

    @property
    def rate(self) -> float:
        return self.events / self.seconds


async def post_batches(url: str, key: Any, batches: Sequence[Batch], concurrency: int) -> tuple[float, list[float]]:
    """Post the batches from `concurrency` workers over keep-alive connections.

    Every answer is checked: 200 with the expected counts, or BenchError. A batch with
    contested retries (`--overlapping-retries`) gets its `applied` checked within its range,
    and the sum over all the batches exactly."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    latencies: list[float] = []
    applied_total = 0
    queue = iter(range(len(batches)))
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=httpx.Timeout(300), trust_env=False) as client:

        async def worker() -> None:
            for index in queue:
                batch = batches[index]
                headers = signed_headers(key, batch.body)  # signed just before sending
                started = time.perf_counter()
                try:
                    response = await client.post("/webhooks/sendgrid", content=batch.body, headers=headers)
                except httpx.HTTPError as error:
                    raise BenchError(f"batch {index}: {type(error).__name__}: {error}") from error
                latencies.append(time.perf_counter() - started)
                low, high = batch.applied_range()
                expected = {
                    "received": batch.events,
                    "applied": batch.applied if low == high else f"{low}..{high}",
                    "pending": batch.pending,
                }
                if response.status_code != 200:
                    raise BenchError(f"batch {index}: HTTP {response.status_code}: {response.text[:1000]}")
                answer = response.json()
                applied = answer.get("applied") if isinstance(answer, dict) else None
                in_range = isinstance(applied, int) and low <= applied <= high
                if not in_range or {**answer, "applied": expected["applied"]} != expected:
                    raise BenchError(f"batch {index}: answer {answer}, expected {expected}")
                nonlocal applied_total
                applied_total += applied

        started = time.perf_counter()
        tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
        elapsed = time.perf_counter() - started
    if applied_total != sum(b.applied for b in batches):
        raise BenchError(
            f"the batches' answers applied {applied_total} events, expected {sum(b.applied for b in batches)}"
        )
    return elapsed, latencies


def server_command(port: int, profile_path: Path | None, mode: str | None) -> list[str]:
    """`gateway serve`, or the same under cProfile or with phase timers (hidden commands of
    this script, run by path so that an installed or PYTHONPATH gateway comes first)."""
    if profile_path is None:
        return [*gateway_command(), "serve", "--port", str(port)]
    hidden = _PHASED_SERVE if mode == "phases" else _PROFILED_SERVE
    return [sys.executable, str(Path(__file__).resolve()), hidden, str(profile_path), str(port)]


async def run_round(
    server: Server,
    key: Any,
    batches: Sequence[Batch],
    concurrency: int,
    pg_database: str | None,
) -> RoundResult:
    window = CpuWindow([server.pid], pg_database)
    elapsed, latencies = await post_batches(server.url, key, batches, concurrency)
    cpu = window.stop()
    pg_cpu = cpu.postgres if pg_database else None
    return RoundResult(sum(b.events for b in batches), elapsed, latencies, cpu.server, cpu.here, pg_cpu)


# --- one database -------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


@dataclass(slots=True)
class DatabaseResult:
    database: str
    rounds: list[RoundResult]
    setup: dict[str, float]
    problems: list[str]

    def summary(self) -> dict[str, Any]:
        rates = [r.rate for r in self.rounds]
        latencies = [x for r in self.rounds for x in r.latencies]
        spread = Spread.of(rates)
        return {
            "database": self.database,
            "events_per_second": {
                "median": spread.median,
                "min": spread.low,
                "max": spread.high,
                "spread_percent": spread.relative * 100,
                "rounds": rates,
            },
            "batch_latency_seconds": {
                "p50": percentile(latencies, 50),
                "p99": percentile(latencies, 99),
                "max": max(latencies),
                "requests": len(latencies),
            },
            "cpu_share_of_wall": {
                "server": sum(r.server_cpu for r in self.rounds) / sum(r.seconds for r in self.rounds),
                "client": sum(r.client_cpu for r in self.rounds) / sum(r.seconds for r in self.rounds),
                "pg_backends": (
                    sum(r.pg_cpu or 0 for r in self.rounds) / sum(r.seconds for r in self.rounds)
                    if self.rounds[0].pg_cpu is not None
                    else None
                ),
            },
            "setup_seconds": self.setup,
            "problems": self.problems,
        }


def run_database(kind: str, args: argparse.Namespace, profile_dir: Path | None) -> DatabaseResult:
    rng = random.Random(args.seed)
    print(
        f"\n== {kind}: {args.emails:,} e-mails, {args.rounds} rounds x {args.batches} batches x "
        f"{args.batch:,} events, concurrency {args.concurrency} ==",
        flush=True,
    )
    with (
        tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp,
        databases.fresh_database(kind, Path(tmp), f"gateway_bench_{os.getpid()}") as db,
    ):
        workdir, pg_name = Path(tmp), db.name
        private_key, public_key = key_pair()
        env = gateway_env(db.url, workdir / "data", {"GATEWAY_SENDGRID_VERIFICATION_KEY": public_key})
        setup: dict[str, float] = {}

        started = time.perf_counter()
        run([*gateway_command(), "migrate"], env)
        setup["migrate"] = time.perf_counter() - started

        started = time.perf_counter()
        settings = settings_from(env)
        analyze = None
        if pg_name is not None and args.analyze:
            analyze = functools.partial(asyncio.to_thread, databases.analyze, pg_name)
        emails = asyncio.run(
            register_emails(
                settings,
                args.emails,
                rng,
                concurrency=1 if pg_name is None else 4,
                after_first=analyze,
            )
        )
        if analyze is not None:
            asyncio.run(analyze())
        setup["register"] = time.perf_counter() - started

        ledger = Ledger()
        factory = EventFactory(emails, rng, ledger, overlapping=args.overlapping_retries)
        port = args.port or free_port()
        profile_path = None
        if profile_dir and args.profile == "cprofile":
            profile_path = profile_dir / f"server-{kind}.prof"
        elif profile_dir and args.profile == "phases":
            profile_path = profile_dir / f"phases-{kind}.json"
        started = time.perf_counter()
        command = server_command(port, profile_path, args.profile)
        server = Server("gateway serve", command, env, port, workdir / "server.log")
        rounds: list[RoundResult] = []
        spy = None
        try:
            server.wait_ready("/healthz")
            setup["server_start"] = time.perf_counter() - started
            print(
                f"  setup: migrate {setup['migrate']:.1f} s, registered {len(emails):,} e-mails in "
                f"{setup['register']:.1f} s, server up on :{port} in {setup['server_start']:.1f} s",
                flush=True,
            )
            for _ in range(args.warmup):  # one at a time: the first retries come from these
                asyncio.run(post_batches(server.url, private_key, [factory.batch(args.batch)], 1))
                factory.acknowledge()
            snapshots = [phase_snapshot(server, profile_path)] if args.profile == "phases" and profile_path else []
            if args.profile == "py-spy" and profile_dir is not None:
                spy = PySpy(args.py_spy, server.pid, profile_dir / f"py-spy-{kind}.txt", rate=PY_SPY_RATE, threads=True)
            for number in range(1, args.rounds + 1):
                batches = [factory.batch(args.batch) for _ in range(args.batches)]  # built outside the timing
                if analyze is not None:  # outside the timing, as autovacuum would between rounds
                    asyncio.run(analyze())
                result = asyncio.run(run_round(server, private_key, batches, args.concurrency, pg_name))
                factory.acknowledge()
                rounds.append(result)
                if snapshots:
                    snapshots.append(phase_snapshot(server, profile_path))  # type: ignore[arg-type]
                pg = f", pg backends {result.pg_cpu / result.seconds:4.0%}" if result.pg_cpu is not None else ""
                print(
                    f"  round {number}: {result.events:,} events in {result.seconds:5.2f} s = "
                    f"{result.rate:7,.0f} events/s | batch p50 "
                    f"{_ms(percentile(result.latencies, 50))}, "
                    f"p99 {_ms(percentile(result.latencies, 99))} | CPU/wall: server "
                    f"{result.server_cpu / result.seconds:4.0%}"
                    f"{pg}, bench client {result.client_cpu / result.seconds:4.0%}",
                    flush=True,
                )
            if spy is not None:
                report_py_spy(spy, busy_seconds=sum(r.seconds for r in rounds))
                spy = None
            if len(snapshots) > 2:
                print(phase_rounds_table(snapshots))
        except BaseException:
            if spy is not None:
                spy.kill()
            server.stop()  # first, so that the log has the server's side of the failure
            print(f"  server log (last lines):\n{server.tail()}", file=sys.stderr)
            raise
        finally:
            server.stop()
        if profile_path is not None and args.profile == "cprofile":
            report_profile(profile_path)
        elif profile_path is not None:
            report_phases(profile_path)
        problems = asyncio.run(check_database(settings, ledger))
    result = DatabaseResult(kind, rounds, setup, problems)
    s = result.summary()
    rate, lat = s["events_per_second"], s["batch_latency_seconds"]
    print(
        f"  {kind}: median {rate['median']:,.0f} events/s (min {rate['min']:,.0f}, "
        f"max {rate['max']:,.0f}, spread {rate['spread_percent']:.0f}% of the median) | "
        f"batch latency p50 {_ms(lat['p50'])}, "
        f"p99 {_ms(lat['p99'])} over {lat['requests']} requests",
        flush=True,
    )
    print(
        "  check: "
        + (
            "OK: nothing lost, nothing doubled, every event on its e-mail"
            if not problems
            else "FAILED: " + "; ".join(problems)
        ),
        flush=True,
    )
    return result


# --- profiling ----------------------------------------------------------------


def serve_under_cprofile(out: str, port: str) -> None:
    """The server process for --profile cprofile: `gateway serve` under cProfile.

    The stats are written when it stops (SIGTERM)."""
    from gateway.cli import main

    # uvicorn re-raises the SIGTERM it caught once it has shut down: let that one pass.
    signal.signal(signal.SIGTERM, lambda *_: None)
    profiler = cProfile.Profile()
    try:
        profiler.runcall(main, ["serve", "--port", port])
    finally:
        profiler.dump_stats(out)


PY_SPY_RATE = 200


def report_py_spy(spy: PySpy, busy_seconds: float) -> None:
    """Write the samples and summarize them against the time spent in timed rounds."""
    if spy.stop() is None:
        return
    summary = summarize_py_spy(spy.out, busy_seconds * PY_SPY_RATE)
    spy.out.with_suffix(".summary.txt").write_text(summary)
    print(f"  py-spy samples: {spy.out} (collapsed stacks), summary in {spy.out.with_suffix('.summary.txt')}")
    print(summary)


def summarize_py_spy(path: Path, possible: float, top: int = 30) -> str:
    """Where the busiest thread spends its time: inclusive and self shares of its samples."""
    threads: dict[str, list[tuple[list[str], int]]] = {}
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        threads.setdefault(frames[0], []).append((frames[1:], int(count)))
    if not threads:
        return "  (no samples)"
    lines = []
    for thread, stacks in sorted(threads.items(), key=lambda kv: -sum(c for _, c in kv[1])):
        busy = sum(c for _, c in stacks)
        if busy < possible / 100:
            continue  # idle threads (the aiosqlite one on PostgreSQL, ...)
        lines.append(f"  {thread}: {busy:,} busy samples = {busy / possible:.0%} of the timed rounds' wall time")
    name, stacks = max(threads.items(), key=lambda kv: sum(c for _, c in kv[1]))
    total = sum(c for _, c in stacks)
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    for frames, count in stacks:
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
        leaf = frames[-1] if frames else "<no Python frame: in C (event loop, I/O)>"
        own[leaf] = own.get(leaf, 0) + count

    # py-spy names files relative to their sys.path entry: "ingest.py", "webhooks/routes.py"
    # for the gateway, "sqlalchemy/orm/session.py" for a library.
    ours = {entry.name for entry in (ROOT / "gateway").iterdir()}

    def in_gateway(frame: str) -> bool:
        where = frame.rpartition(" (")[2]
        return where.split("/", 1)[0].split(":", 1)[0] in ours

    lines.append(
        f"  {name} (the busiest thread): inclusive share of its {total:,} busy samples, "
        "gateway code "
        "(SQLAlchemy runs statements in greenlets, which py-spy shows as separate stacks: "
        "the SQL work is mostly not under these frames)"
    )
    gateway_frames = [(f, c) for f, c in inclusive.items() if in_gateway(f)]
    for frame, count in sorted(gateway_frames, key=lambda fc: -fc[1])[:top]:
        lines.append(f"    {count / total:6.1%}  {frame}")
    lines.append("  inclusive share, any code:")
    for frame, count in sorted(inclusive.items(), key=lambda fc: -fc[1])[:top]:
        lines.append(f"    {count / total:6.1%}  {frame}")
    lines.append("  self time (leaf frames):")
    for frame, count in sorted(own.items(), key=lambda fc: -fc[1])[:top]:
        lines.append(f"    {count / total:6.1%}  {frame}")
    return "\n".join(lines)


def serve_with_phase_timers(out: str, port: str) -> None:
    """The server process for --profile phases: `gateway serve` with timers wrapped around
    the phases of a webhook request and every SQL statement, by kind; written at SIGTERM.

    The gateway's code is not changed, only wrapped in this process. Wall time includes
    waiting (for the database, for row locks, and for other requests' CPU when
    --concurrency > 1); CPU is the process's (all threads: aiosqlite's too)."""
    import re
    from collections import defaultdict

    from sqlalchemy.ext.asyncio import AsyncSession

    import gateway.ingest as ingest
    import gateway.live as live
    import gateway.webhooks.routes as routes
    from gateway.cli import main
    from gateway.webhooks.providers import sendgrid

    totals: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])

    def record(name: str, wall: float, cpu: float) -> None:
        entry = totals[name]
        entry[0] += 1
        entry[1] += wall
        entry[2] += cpu

    def timed(name: str, fn: Any) -> Any:
        if asyncio.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*a: Any, **kw: Any) -> Any:
                wall, cpu = time.perf_counter(), time.process_time()
                try:
                    return await fn(*a, **kw)
                finally:
                    record(name, time.perf_counter() - wall, time.process_time() - cpu)

            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*a: Any, **kw: Any) -> Any:
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return fn(*a, **kw)
            finally:
                record(name, time.perf_counter() - wall, time.process_time() - cpu)

        return wrapper

    def label(statement: Any) -> str:
        table = getattr(getattr(statement, "table", None), "name", "?")
        for verb in ("insert", "update", "delete"):
            if getattr(statement, f"is_{verb}", False):
                return f"SQL {verb.upper()} {table}"
        if getattr(statement, "is_select", False):
            froms = "+".join(getattr(f, "name", "?") for f in statement.get_final_froms())
            clause = statement.whereclause
            where = re.sub(r"\(?__\[POSTCOMPILE_\w+\]\)?|:\w+", "?", "" if clause is None else str(clause))
            lock = " FOR UPDATE" if statement._for_update_arg is not None else ""
            return f"SQL SELECT {froms} WHERE {where[:60]}{lock}"
        return f"SQL {type(statement).__name__}"

    execute, commit = AsyncSession.execute, AsyncSession.commit

    async def timed_execute(self: AsyncSession, statement: Any, *a: Any, **kw: Any) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return await execute(self, statement, *a, **kw)
        finally:
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            record(label(statement), wall, cpu)

    AsyncSession.execute = timed_execute  # type: ignore[method-assign]
    AsyncSession.commit = timed("SQL COMMIT", commit)  # type: ignore[method-assign]
    routes._sendgrid = timed("webhook handler (all of it)", routes._sendgrid)
    routes._body = timed("  read the body", routes._body)
    sendgrid.verify = timed("  verify the ECDSA signature", sendgrid.verify)
    sendgrid.parse = timed("  parse (JSON + events)", sendgrid.parse)
    routes._ingest = timed("  ingest (transaction, commit, publish)", routes._ingest)
    ingest._match = timed("    match events to e-mails", ingest._match)
    ingest.apply_events = timed("    apply_events", ingest.apply_events)
    ingest.project = timed("      project (status of one e-mail)", ingest.project)
    ingest.publish_changes = timed("    publish changes", ingest.publish_changes)
    if hasattr(live, "list_changes_after"):
        live.list_changes_after = timed("change feed: read the change log", live.list_changes_after)

    def dump(*_: Any) -> None:
        Path(out + ".tmp").write_text(json.dumps(totals))
        os.replace(out + ".tmp", out)

    signal.signal(signal.SIGUSR1, dump)  # the bench asks for a snapshot after each round
    signal.signal(signal.SIGTERM, lambda *_: None)  # see serve_under_cprofile
    try:
        main(["serve", "--port", port])
    finally:
        dump()


def phase_snapshot(server: Server, path: Path) -> dict[str, list[float]]:
    """The phase timer totals so far (the server writes them on SIGUSR1)."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    server.signal(signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_mtime_ns != before:
            return json.loads(path.read_text())
        time.sleep(0.02)
    raise BenchError("the phase-timed server wrote no snapshot")


def phase_rounds_table(snapshots: list[dict[str, list[float]]], top: int = 14) -> str:
    """Wall ms per request of the slowest phases, round by round (does anything grow?)."""
    deltas = []
    for before, after in zip(snapshots, snapshots[1:], strict=False):
        deltas.append({k: [v[i] - before.get(k, [0, 0.0, 0.0])[i] for i in range(3)] for k, v in after.items()})
    handler = "webhook handler (all of it)"
    names = sorted(snapshots[-1], key=lambda k: -snapshots[-1][k][1])[:top]
    lines = [
        "  wall ms per request, round by round:",
        "    " + " ".join(f"{'r' + str(i + 1):>7}" for i in range(len(deltas))) + "  phase",
    ]
    for name in names:
        cells = []
        for d in deltas:
            requests = d.get(handler, [0])[0] or 1
            cells.append(f"{d.get(name, [0, 0.0])[1] / requests * 1000:7.1f}")
        lines.append("    " + " ".join(cells) + f"  {name.strip()}")
    return "\n".join(lines)


def report_phases(path: Path) -> None:
    if not path.exists():
        print(f"  no phase timings written at {path}", file=sys.stderr)
        return
    totals = json.loads(path.read_text())
    requests = totals.get("webhook handler (all of it)", [0])[0] or 1
    lines = [
        f"  where a webhook request's time goes ({requests} requests, warm-up included), per request:",
        f"    {'wall ms':>9} {'CPU ms':>8} {'calls':>7}  phase",
    ]
    heading = False
    for name, (count, wall, cpu) in sorted(totals.items(), key=lambda kv: (kv[0].startswith("SQL"), -kv[1][1])):
        if name.startswith("SQL") and not heading:
            heading = True
            lines.append("    - SQL statements, by kind (inside the phases above):")
        lines.append(f"    {wall / requests * 1000:9.1f} {cpu / requests * 1000:8.1f} {count / requests:7.1f}  {name}")
    text = "\n".join(lines)
    path.with_suffix(".txt").write_text(text)
    print(text)


def report_profile(path: Path, top: int = 35) -> None:
    import pstats

    if not path.exists():
        print(f"  no profile written at {path}", file=sys.stderr)
        return
    text = path.with_suffix(".txt")
    with text.open("w") as out:
        stats = pstats.Stats(str(path), stream=out)
        stats.sort_stats("cumulative").print_stats(top * 2)
        stats.sort_stats("tottime").print_stats(top)
    print(f"  server profile: {path} (pstats), summary in {text}")


# --- main ---------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest",
        description=(
            "Benchmark SendGrid Event Webhook ingestion: signed batches posted over HTTP to a real "
            "`gateway serve` process on a fresh database. Reports events/s per round "
            "(median, min/max), "
            "batch latency p50/p99, and checks the database at the end."
        ),
    )
    parser.add_argument(
        "--database",
        choices=["sqlite", "postgresql", "both"],
        default="both",
        help="which database(s) to run on (default both; PostgreSQL: 127.0.0.1:5432, user postgres)",
    )
    parser.add_argument("--emails", type=int, default=20_000, help="registered e-mails (default 20000)")
    parser.add_argument("--batch", type=int, default=1000, help="events per webhook request (default 1000)")
    parser.add_argument("--batches", type=int, default=20, help="requests per round (default 20)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches before the rounds (default 2)")
    parser.add_argument("--concurrency", type=int, default=4, help="concurrent posters (default 4)")
    parser.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the event mix (default 1)")
    parser.add_argument(
        "--no-analyze",
        dest="analyze",
        action="store_false",
        help="PostgreSQL: do not run ANALYZE after registering and between rounds "
        "(what autovacuum would do; it is off on this machine's server)",
    )
    parser.add_argument(
        "--overlapping-retries",
        action="store_true",
        help="let duplicates repeat events of batches still in flight (a retry that overlaps "
        "the original request), not only of batches already answered",
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    parser.add_argument(
        "--profile",
        choices=["phases", "py-spy", "cprofile"],
        help="where the server's time goes: 'phases' times each phase of a request and each kind "
        "of SQL statement (clean with --concurrency 1); 'py-spy' samples the server during "
        "the rounds (see --py-spy); 'cprofile' runs it under cProfile (slow; pstats file)",
    )
    parser.add_argument(
        "--py-spy",
        default=shutil.which("py-spy"),
        help="the py-spy binary for --profile py-spy (default: py-spy on PATH)",
    )
    parser.add_argument(
        "--profile-dir",
        type=Path,
        default=ROOT / "bench" / "results",
        help="where --profile writes (default bench/results)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [_PROFILED_SERVE]:
        serve_under_cprofile(*argv[1:3])
        return 0
    if argv[:1] == [_PHASED_SERVE]:
        serve_with_phase_timers(*argv[1:3])
        return 0
    args = build_parser().parse_args(argv)
    for name in ("emails", "batch", "batches", "rounds", "concurrency"):
        if getattr(args, name) < 1:
            build_parser().error(f"--{name} must be at least 1")
    if args.warmup < 0:
        build_parser().error("--warmup must be 0 or more")
    profile_dir = None
    if args.profile == "py-spy" and not args.py_spy:
        build_parser().error("--profile py-spy needs py-spy: pip install it in a throwaway venv, pass --py-spy PATH")
    if args.profile:
        profile_dir = args.profile_dir
        profile_dir.mkdir(parents=True, exist_ok=True)
    kinds = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    if "postgresql" in kinds and args.analyze and databases.pg_setting("autovacuum") == "off":
        print(
            "note: autovacuum is off on this PostgreSQL server; the benchmark runs ANALYZE after "
            "registering and between rounds (untimed), as autovacuum would (--no-analyze: don't)"
        )
    started = time.perf_counter()
    results: list[DatabaseResult] = []
    try:
        for kind in kinds:
            results.append(run_database(kind, args, profile_dir))
    except BenchError as error:
        print(f"\nBENCHMARK FAILED: {error}", file=sys.stderr)
        return 1
    summaries = [r.summary() for r in results]
    print(f"\n== summary ({time.perf_counter() - started:.0f} s in all) ==")
    for s in summaries:
        rate, lat = s["events_per_second"], s["batch_latency_seconds"]
        print(
            f"  {s['database']:<10} {rate['median']:7,.0f} events/s median "
            f"(min {rate['min']:,.0f}, max "
            f"{rate['max']:,.0f}) | batch p50 {_ms(lat['p50'])}, p99 {_ms(lat['p99'])} | "
            f"{'check OK' if not s['problems'] else 'CHECK FAILED'}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {"arguments": {k: str(v) for k, v in vars(args).items()}, "results": summaries},
                indent=2,
            )
        )
        print(f"  results written to {args.json}")
    return 1 if any(s["problems"] for s in summaries) else 0


if __name__ == "__main__":
    sys.exit(main())
