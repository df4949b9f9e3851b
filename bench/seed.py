"""A fast bulk loader of the demo data set, for benchmarks at scale (PostgreSQL only).

`gateway seed-demo` writes through the real registration and ingestion code, one
e-mail at a time: about 60 e-mails/s here, so 100,000 would take half an hour. This
loader makes the same shapes as `gateway/demo.py` (same firms, names, documents,
failures, providers, event histories and 4:1 split between the two demo tenants)
and writes them with set-based COPY through asyncpg:

- relations, upserted per tenant by external id, as registration does;
- documents (45 % of e-mails) linked through `email_document`, invoices (35 %),
  plain messages (20 %);
- each e-mail's events in `email_event`, its status, failure and opens computed by
  the gateway's own pure projection (`gateway.status.project`);
- the change log: the SENT row every registration writes, plus one row when the
  events changed the status (as `apply_events` does for a batch);
- `document.latest_email_id` and `invoice.latest_email_id`;
- then `ANALYZE` (autovacuum is off on this machine's server).

`emails` is the number of e-mails of the first tenant ("Demo Accountants"), the one
the screens benchmark reads; the second tenant gets a quarter as many, as in
seed-demo's split. The database must be migrated (`gateway migrate`) and hold no
e-mails yet.

    .venv/bin/python -m bench.seed --database gateway_screens --emails 100000
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import asyncpg

from bench.harness.databases import PG_HOST, PG_PORT, PG_USER
from gateway import demo
from gateway.enums import EmailStatus, InvoiceStatus
from gateway.status import Fact, project

__all__ = ["SeedReport", "first_tenant_total", "seed"]


_EMAIL_COLUMNS = (
    "id",
    "tenant_id",
    "external_id",
    "subject",
    "recipient",
    "sent_at",
    "provider_message_id",
    "tracking_id",
    "relation_id",
    "invoice_id",
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
    "history_purged_at",
    "created_at",
)
_EVENT_COLUMNS = (
    "tenant_id",
    "email_id",
    "source",
    "event_key",
    "status",
    "occurred_at",
    "received_at",
    "description",
    "failure_category",
    "reason",
    "smtp_code",
    "machine_open",
    "user_agent",
    "ip",
)
_CHANGE_COLUMNS = (
    "tenant_id",
    "email_id",
    "previous_status",
    "status",
    "changed_at",
    "recorded_at",
)


@dataclass(frozen=True, slots=True)
class SeedReport:
    tenant_id: int
    tenant_name: str
    emails: int
    rows: dict[str, int]
    seconds: float


def first_tenant_total(emails: int) -> int:
    """How many e-mails to write in all so that the first tenant gets `emails` of them.

    seed-demo puts e-mail n in the second tenant when n % 5 == 0, in the first otherwise.
    """
    total = emails * 5 // 4
    while total - (total + 4) // 5 < emails:
        total += 1
    return total


def _name(value: Any) -> str | None:
    return None if value is None else str(value.value if hasattr(value, "value") else value)


async def seed(database: str, *, emails: int, seed_value: int = 1) -> SeedReport:
    """Bulk-load the demo shapes into `database` (migrated, empty) and ANALYZE it."""
    started = time.perf_counter()
    connection = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database=database)
    try:
        async with connection.transaction():
            if await connection.fetchval("SELECT count(*) FROM email"):
                raise RuntimeError(f"database {database!r} already holds e-mails: seed an empty one")
            now = datetime.now(UTC)
            tenant_ids = []
            for name in demo.DEMO_TENANTS:
                tenant_ids.append(
                    await connection.fetchval(
                        "INSERT INTO tenant (name, created_at) VALUES ($1, $2) "
                        "ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING id",
                        name,
                        now,
                    )
                )
            rows = _generate(tenant_ids, first_tenant_total(emails), seed_value, now)
            for table, columns in (
                ("relation", ("id", "tenant_id", "external_id", "name", "created_at")),
                (
                    "invoice",
                    (
                        "id",
                        "tenant_id",
                        "external_id",
                        "number",
                        "invoice_status",
                        "relation_id",
                        "latest_email_id",
                        "created_at",
                    ),
                ),
                ("email", _EMAIL_COLUMNS),
                (
                    "document",
                    (
                        "id",
                        "tenant_id",
                        "external_id",
                        "title",
                        "relation_id",
                        "latest_email_id",
                        "created_at",
                    ),
                ),
                ("email_document", ("email_id", "document_id", "tenant_id")),
                ("email_event", _EVENT_COLUMNS),
                ("status_change", _CHANGE_COLUMNS),
            ):
                await connection.copy_records_to_table(table, records=rows[table], columns=columns)
            for table in (
                "relation",
                "invoice",
                "email",
                "document",
                "email_event",
                "status_change",
            ):
                await connection.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608 (our table names)
                    f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"
                )
        await connection.execute("ANALYZE")
        first = await connection.fetchval("SELECT count(*) FROM email WHERE tenant_id = $1", tenant_ids[0])
    finally:
        await connection.close()
    return SeedReport(
        tenant_id=tenant_ids[0],
        tenant_name=demo.DEMO_TENANTS[0],
        emails=first,
        rows={table: len(records) for table, records in rows.items()},
        seconds=time.perf_counter() - started,
    )


def _generate(
    tenant_ids: Sequence[int], total: int, seed_value: int, now: datetime
) -> dict[str, list[tuple[Any, ...]]]:
    """Every row to write, with explicit ids, in the order seed-demo would create them."""
    rng = random.Random(seed_value)
    relation_pool = [
        (f"rel-{i:04d}", f"{rng.choice(demo._FIRMS)} {rng.choice(demo._NAMES)}")  # noqa: SLF001
        for i in range(max(10, total // 10))
    ]
    relation_ids: dict[tuple[int, str], int] = {}
    out: dict[str, list[tuple[Any, ...]]] = {
        name: []
        for name in (
            "relation",
            "invoice",
            "email",
            "document",
            "email_document",
            "email_event",
            "status_change",
        )
    }
    for n in range(total):
        email_id = n + 1
        tenant_id = tenant_ids[0] if n % 5 else tenant_ids[1]
        relation_external_id, relation_name = rng.choice(relation_pool)
        relation_id = relation_ids.get((tenant_id, relation_external_id))
        if relation_id is None:
            relation_id = relation_ids[(tenant_id, relation_external_id)] = len(relation_ids) + 1
            out["relation"].append((relation_id, tenant_id, relation_external_id, relation_name, now))
        sent_at = demo._EPOCH - timedelta(minutes=n * 7 + rng.randint(0, 5))  # noqa: SLF001
        kind = rng.random()
        invoice_id = None
        if kind < 0.45:
            title = rng.choice(demo._DOCS)  # noqa: SLF001
            document_id = len(out["document"]) + 1
            out["document"].append(
                (
                    document_id,
                    tenant_id,
                    f"doc-{n:06d}",
                    f"{title} {relation_name}",
                    relation_id,
                    email_id,
                    now,
                )
            )
            out["email_document"].append((email_id, document_id, tenant_id))
            subject = f"{title} voor {relation_name}"
        elif kind < 0.8:
            number = f"2026-{n:06d}"
            invoice_id = len(out["invoice"]) + 1
            invoice_status = rng.choice(list(InvoiceStatus))
            out["invoice"].append(
                (
                    invoice_id,
                    tenant_id,
                    f"inv-{n:06d}",
                    number,
                    invoice_status.value,
                    relation_id,
                    email_id,
                    now,
                )
            )
            subject = f"Factuur {number}"
        else:
            subject = f"Bericht over uw dossier ({relation_name})"
        recipient = f"{relation_name.split()[-1].lower().replace(' ', '')}{n % 97}@example.com"

        events = demo._events(rng, SimpleNamespace(id=email_id, sent_at=sent_at))  # type: ignore[arg-type]  # noqa: SLF001
        facts = [
            Fact(
                key=f"{e.source}:{e.key}",
                status=e.status,
                occurred_at=e.occurred_at,
                failure_category=e.failure_category,
                reason=e.reason,
                smtp_code=e.smtp_code,
                automated=bool(e.machine_open),
            )
            for e in events
        ]
        p = project(sent_at, facts)
        failure = p.failure
        out["email"].append(
            (
                email_id,
                tenant_id,
                f"demo-{n:06d}",
                subject,
                recipient,
                sent_at,
                f"demo-msg-{n:06d}",
                secrets.token_urlsafe(16),
                relation_id,
                invoice_id,
                p.status.value,
                p.status_changed_at,
                p.delivered_at,
                _name(failure.category) if failure else None,
                failure.reason[:2000] if failure else None,
                failure.smtp_code if failure else None,
                failure.occurred_at if failure else None,
                p.opens.count,
                p.opens.first_opened_at,
                p.opens.last_opened_at,
                p.opens.likely_automated,
                None,
                now,
            )
        )
        for e in events:
            out["email_event"].append(
                (
                    tenant_id,
                    email_id,
                    e.source,
                    e.key[:300],
                    e.status.value,
                    e.occurred_at,
                    now,
                    e.description[:2000],
                    _name(e.failure_category),
                    e.reason,
                    e.smtp_code,
                    bool(e.machine_open),
                    e.user_agent,
                    e.ip,
                )
            )
        out["status_change"].append((tenant_id, email_id, None, EmailStatus.SENT.value, sent_at, now))
        if p.status is not EmailStatus.SENT:
            out["status_change"].append(
                (
                    tenant_id,
                    email_id,
                    EmailStatus.SENT.value,
                    p.status.value,
                    p.status_changed_at,
                    now,
                )
            )
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.seed",
        description="Bulk-load the demo data set into a migrated, empty PostgreSQL database "
        "on 127.0.0.1:5432 (user postgres).",
    )
    parser.add_argument("--database", required=True, help="the database name")
    parser.add_argument(
        "--emails",
        type=int,
        default=100_000,
        help="e-mails of the first tenant (default 100000); the second gets a quarter as many",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    report = asyncio.run(seed(args.database, emails=args.emails, seed_value=args.seed))
    counts = ", ".join(f"{table} {count:,}" for table, count in report.rows.items())
    print(f"seeded {report.emails:,} e-mails for {report.tenant_name!r} in {report.seconds:.1f} s ({counts})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
