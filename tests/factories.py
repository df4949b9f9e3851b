"""Test data, written through the same code the gateway uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import count

from gateway import ingest, models
from gateway.db import SessionFactory
from gateway.enums import EmailStatus, FailureCategory, InvoiceStatus, Scope
from gateway.events import IncomingEvent
from gateway.repositories.api_keys import Principal, create_api_key, get_or_create_tenant
from gateway.repositories.emails import list_emails_by_ids
from gateway.repositories.registration import DocumentData, InvoiceData, Registration, RelationData

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
# Numbers the data a test makes (names, keys, and sent_at = T0 + n minutes). Restarted
# before every test (tests/conftest.py), so a test makes the same data whatever ran before.
_serial = count(1)


def restart_numbering() -> None:
    """Number the next test's data from 1 again."""
    global _serial  # one counter for the helpers here, restarted per test
    _serial = count(1)


READ_WRITE = frozenset({Scope.READ, Scope.WRITE})
READ_ONLY = frozenset({Scope.READ})


@dataclass
class TenantFixture:
    id: int
    name: str
    key: str
    read_key: str
    principal: Principal = field(init=False)
    read_principal: Principal = field(init=False)

    def __post_init__(self) -> None:
        self.principal = Principal(tenant_id=self.id, scopes=READ_WRITE)
        self.read_principal = Principal(tenant_id=self.id, scopes=READ_ONLY)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    @property
    def read_auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.read_key}"}


async def make_tenant(factory: SessionFactory, name: str | None = None) -> TenantFixture:
    """A tenant with a read-write key and a read-only key."""
    async with factory() as session:
        tenant = await get_or_create_tenant(session=session, name=name or f"Office {next(_serial)}")
        _, key = await create_api_key(session=session, tenant_id=tenant.id, scopes=READ_WRITE)  # type: ignore[arg-type]
        _, read_key = await create_api_key(session=session, tenant_id=tenant.id, scopes=READ_ONLY)  # type: ignore[arg-type]
        await session.commit()
        return TenantFixture(id=tenant.id, name=tenant.name, key=key, read_key=read_key)  # type: ignore[arg-type]


async def register(
    factory: SessionFactory,
    tenant: TenantFixture,
    *,
    n: int | None = None,
    sent_at: datetime | None = None,
    relation: str | None = None,
    documents: tuple[str, ...] = (),
    invoice: str | None = None,
    subject: str | None = None,
    recipient: str | None = None,
    provider_message_id: str | None = None,
) -> models.Email:
    """Register one e-mail through the ingestion path."""
    n = n if n is not None else next(_serial)
    data = Registration(
        external_id=f"ext-{tenant.id}-{n}",
        subject=subject or f"Subject {n}",
        recipient=recipient or f"client{n}@example.com",
        sent_at=sent_at or T0 + timedelta(minutes=n),
        provider_message_id=provider_message_id,
        relation=RelationData(relation, f"Relation {relation}") if relation else None,
        documents=tuple(DocumentData(d, f"Document {d}") for d in documents),
        invoice=InvoiceData(invoice, f"INV-{invoice}", InvoiceStatus.ISSUED) if invoice else None,
    )
    async with factory() as session:
        return await ingest.register(session=session, tenant_id=tenant.id, data=data, publisher=None)


def event(
    status: EmailStatus,
    at: datetime,
    key: str | None = None,
    *,
    source: str = "api",
    category: FailureCategory | None = None,
    machine_open: bool = False,
) -> IncomingEvent:
    if status is EmailStatus.DELIVERY_FAILED and category is None:
        category = FailureCategory.HARD_BOUNCE
    return IncomingEvent(
        source=source,
        key=key or f"k{next(_serial)}",
        status=status,
        occurred_at=at,
        description=f"{status.value} at {at.isoformat()}",
        failure_category=category,
        reason="550 5.1.1 no such user" if category else None,
        smtp_code=550 if category else None,
        machine_open=machine_open,
    )


async def record(factory: SessionFactory, email: models.Email, *events: IncomingEvent) -> models.Email:
    """Record events for an e-mail through the ingestion path."""
    async with factory() as session:
        return await ingest.record(session=session, email=email, events=events, publisher=None)


async def reload(factory: SessionFactory, email: models.Email) -> models.Email:
    async with factory() as session:
        (found,) = await list_emails_by_ids(session=session, tenant_id=email.tenant_id, ids=[email.id])  # type: ignore[list-item]
        return found


def graphql_data(result: object) -> dict:  # type: ignore[type-arg]
    """The data of an execution result that must have no errors."""
    errors = getattr(result, "errors", None)
    assert not errors, f"unexpected GraphQL errors: {errors}"
    data = getattr(result, "data", None)
    assert data is not None
    return data


def graphql_error(result: object) -> tuple[str, str | None]:
    """(message, extensions.code) of the one error an execution result must have."""
    errors = getattr(result, "errors", None)
    assert errors and len(errors) == 1, f"expected one error, got {errors}"
    error = errors[0]
    return error.message, (error.extensions or {}).get("code")
