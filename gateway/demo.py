"""A realistic, deterministic demo data set, written through the real ingestion code."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from gateway import models
from gateway.db import SessionFactory
from gateway.enums import EmailStatus, FailureCategory, InvoiceStatus
from gateway.events import IncomingEvent
from gateway.ids import encode_id
from gateway.ingest import apply_events, write_first_statuses
from gateway.repositories.api_keys import get_or_create_tenant
from gateway.repositories.demo import count_emails, get_newest_email_ids
from gateway.repositories.registration import DocumentData, InvoiceData, Registration, RelationData, register_email

__all__ = ["DEMO_TENANTS", "demo_ids", "seed_demo"]

DEMO_TENANTS = ("Demo Accountants", "Second Office")
_BATCH = 500
_EPOCH = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)

_FIRMS = [
    "Bakkerij",
    "Garage",
    "Installatiebedrijf",
    "Hoveniers",
    "Advocatenkantoor",
    "Tandartspraktijk",
    "Bouwbedrijf",
    "Kapsalon",
    "Transport",
    "Architecten",
    "Drukkerij",
    "Fysiotherapie",
]
_NAMES = [
    "De Vries",
    "Jansen",
    "Van den Berg",
    "Bakker",
    "Visser",
    "Smit",
    "Meijer",
    "De Boer",
    "Mulder",
    "De Groot",
    "Bos",
    "Vos",
    "Peters",
    "Hendriks",
    "Dekker",
    "Brouwer",
]
_DOCS = [
    "Jaarrekening",
    "Btw-aangifte Q3",
    "Loonstrook oktober",
    "Aangifte inkomstenbelasting",
    "Opdrachtbevestiging",
    "Balans per 30 september",
    "Kostenoverzicht",
    "Machtiging",
]
_FAILURES = [
    (FailureCategory.HARD_BOUNCE, "550 5.1.1 The email account that you tried to reach does not exist", 550),
    (FailureCategory.BLOCKED, "554 5.7.1 Service unavailable; client host blocked using Spamhaus", 554),
    (FailureCategory.INVALID_RECIPIENT, "Invalid recipient address: missing domain", None),
    (FailureCategory.SOFT_BOUNCE, "452 4.2.2 Mailbox full (gave up after 72 hours)", 452),
    (FailureCategory.BLOCKED, "550 5.7.26 Unauthenticated email is not accepted (DMARC policy)", 550),
    (FailureCategory.DROPPED, "Recipient is on the suppression list after an earlier bounce", None),
]
_PROVIDERS = ["sendgrid", "mailgun", "postmark", "ses", "resend"]


def _events(rng: random.Random, email: models.Email) -> list[IncomingEvent]:
    """A plausible history: delivered most of the time, opened often, failing sometimes."""
    source = rng.choice(_PROVIDERS)
    t = email.sent_at
    roll = rng.random()
    out: list[IncomingEvent] = []

    def event(
        status: EmailStatus,
        at: datetime,
        description: str,
        *,
        failure_category: FailureCategory | None = None,
        reason: str | None = None,
        smtp_code: int | None = None,
        machine_open: bool | None = None,
        user_agent: str | None = None,
    ) -> None:
        out.append(
            IncomingEvent(
                source=source,
                key=f"demo-{email.id}-{len(out)}",
                status=status,
                occurred_at=at,
                description=description,
                failure_category=failure_category,
                reason=reason,
                smtp_code=smtp_code,
                machine_open=machine_open,
                user_agent=user_agent,
            )
        )

    if roll < 0.12:
        if rng.random() < 0.4:
            event(
                EmailStatus.SENT,
                t + timedelta(minutes=5),
                "Deferred: 421 4.7.0 Try again later",
                failure_category=FailureCategory.SOFT_BOUNCE,
                reason="421 4.7.0 Try again later",
                smtp_code=421,
            )
        category, reason, code = rng.choice(_FAILURES)
        event(
            EmailStatus.DELIVERY_FAILED,
            t + timedelta(minutes=rng.randint(1, 600)),
            f"Failed: {reason}",
            failure_category=category,
            reason=reason,
            smtp_code=code,
        )
        return out
    if roll < 0.25:
        return out  # still only sent
    delivered = t + timedelta(seconds=rng.randint(2, 90))
    event(EmailStatus.DELIVERED, delivered, "Delivered: 250 2.0.0 OK")
    if roll < 0.55:
        return out
    automated = rng.random() < 0.35
    agent = "Mozilla/5.0" if automated else "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Outlook/16.0"
    for i in range(rng.randint(1, 3)):
        opened = delivered + timedelta(seconds=3 if automated and i == 0 else rng.randint(60, 86_400))
        event(EmailStatus.OPENED, opened, "Opened (tracking image fetched)", machine_open=automated, user_agent=agent)
    if rng.random() < 0.08:  # a complaint proves delivery: the status stays OPENED
        event(
            EmailStatus.DELIVERED,
            delivered + timedelta(days=1),
            "The recipient reported the e-mail as spam",
            failure_category=FailureCategory.SPAM_COMPLAINT,
        )
    return out


async def seed_demo(session_factory: SessionFactory, *, emails: int = 300, seed: int = 1) -> int:
    """Fill the demo tenants with `emails` e-mails; returns how many were written (0 if already there)."""
    rng = random.Random(seed)  # noqa: S311  (demo data, not security)
    async with session_factory() as session:
        tenants = [await get_or_create_tenant(session=session, name=name) for name in DEMO_TENANTS]
        await session.commit()
        existing = await count_emails(session=session, tenant_id=models.stored_id(tenants[0].id))
    if existing:
        return 0
    relations = [
        RelationData(f"rel-{i:04d}", f"{rng.choice(_FIRMS)} {rng.choice(_NAMES)}") for i in range(max(10, emails // 10))
    ]
    written = 0
    for start in range(0, emails, _BATCH):
        async with session_factory() as session:
            batch = []
            for n in range(start, min(start + _BATCH, emails)):
                tenant = tenants[0] if n % 5 else tenants[1]
                relation = rng.choice(relations)
                sent_at = _EPOCH - timedelta(minutes=n * 7 + rng.randint(0, 5))
                kind = rng.random()
                documents: tuple[DocumentData, ...] = ()
                invoice = None
                if kind < 0.45:
                    title = rng.choice(_DOCS)
                    documents = (DocumentData(f"doc-{n:06d}", f"{title} {relation.name}"),)
                    subject = f"{title} voor {relation.name}"
                elif kind < 0.8:
                    number = f"2026-{n:06d}"
                    invoice = InvoiceData(f"inv-{n:06d}", number, rng.choice(list(InvoiceStatus)))
                    subject = f"Factuur {number}"
                else:
                    subject = f"Bericht over uw dossier ({relation.name})"
                registration = Registration(
                    external_id=f"demo-{n:06d}",
                    subject=subject,
                    recipient=f"{relation.name.split()[-1].lower().replace(' ', '')}{n % 97}@example.com",
                    sent_at=sent_at,
                    provider_message_id=f"demo-msg-{n:06d}",
                    relation=relation,
                    documents=documents,
                    invoice=invoice,
                )
                email, _ = await register_email(
                    session=session, tenant_id=models.stored_id(tenant.id), data=registration
                )
                batch.append(email)
            await write_first_statuses(session=session, emails=batch)
            await apply_events(session=session, events=[(e, ev) for e in batch for ev in _events(rng, e)])
            await session.commit()
            written += len(batch)
    return written


async def demo_ids(session_factory: SessionFactory, *, tenant: str = DEMO_TENANTS[0]) -> dict[str, str]:
    """Ready-to-use global ids of one demo office: its newest e-mail, newest failed e-mail, and a relation.

    The README's examples read them from the variables that `scripts/demo` prints,
    so a newcomer's first queries answer with data of the office their key reads.
    """
    async with session_factory() as session:
        office = models.stored_id((await get_or_create_tenant(session=session, name=tenant)).id)
        email = await get_newest_email_ids(session=session, tenant_id=office)
        failed = await get_newest_email_ids(session=session, tenant_id=office, status=EmailStatus.DELIVERY_FAILED)
        related = await get_newest_email_ids(session=session, tenant_id=office, with_relation=True)
    ids = {}
    if email is not None:
        ids["EMAIL"] = encode_id("Email", email[0])
    if failed is not None:
        ids["FAILED_EMAIL"] = encode_id("Email", failed[0])
    if related is not None and related[1] is not None:
        ids["RELATION"] = encode_id("Relation", related[1])
    return ids
