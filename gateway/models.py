"""The tables. SQLModel classes; import this module as `models` (`models.Email`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel

from gateway.enums import EmailStatus, FailureCategory, InvoiceStatus

__all__ = [
    "ApiKey",
    "Document",
    "Email",
    "EmailDocument",
    "EmailEvent",
    "Invoice",
    "PendingEvent",
    "Relation",
    "StatusChange",
    "Tenant",
    "TrustedDocument",
    "UTCDateTime",
    "WebhookNonce",
    "stored_id",
    "table_of",
    "utcnow",
]


def utcnow() -> datetime:
    return datetime.now(UTC)


def table_of(model: type[SQLModel]) -> sa.Table:
    """The Core table behind a table model, for set-based statements.

    SQLModel sets `__table__` on every `table=True` class without declaring it to
    type checkers; this is the one place that reads it.
    """
    table = getattr(model, "__table__", None)
    if not isinstance(table, sa.Table):
        raise TypeError(f"{model.__name__} is not a table model")
    return table


def stored_id(pk: int | None) -> int:
    """The primary key of a row read from the database (None only before its INSERT)."""
    if pk is None:
        raise ValueError("this row was never stored: it has no primary key yet")
    return pk


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on PostgreSQL (timestamptz) and SQLite (naive text)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the gateway stores aware UTC times only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:  # noqa: ARG002  TypeDecorator's signature
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _enum(enum: type[Any]) -> sa.Enum:
    # Stored as VARCHAR with the member names: adding a member needs no migration.
    return sa.Enum(enum, native_enum=False, create_constraint=False, length=32)


def _tenant_fk() -> Any:
    return Field(foreign_key="tenant.id", nullable=False, ondelete="CASCADE")


class Tenant(SQLModel, table=True):
    """An accounting office: every other row belongs to exactly one tenant."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, unique=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class ApiKey(SQLModel, table=True):
    """An API key: only its SHA-256 is stored; `prefix` lets people tell keys apart.

    A key is live until it is revoked or its `expires_at` has come (a rotated key
    expires after its grace period). `last_used_at` is as precise as a minute.
    """

    __tablename__ = "api_key"

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: int = _tenant_fk()
    # Indexed: operators revoke and rotate keys by their prefix.
    prefix: str = Field(max_length=16, index=True)
    key_hash: str = Field(max_length=64, unique=True)
    scopes: str = Field(max_length=100)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)


class Relation(SQLModel, table=True):
    """A client of the accounting office."""

    __table_args__ = (sa.UniqueConstraint("tenant_id", "external_id"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: int = _tenant_fk()
    external_id: str = Field(max_length=200)
    name: str = Field(max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class Document(SQLModel, table=True):
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "external_id"),
        sa.Index("ix_document_tenant_newest", "tenant_id", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: int = _tenant_fk()
    external_id: str = Field(max_length=200)
    title: str = Field(max_length=500)
    relation_id: int | None = Field(default=None, foreign_key="relation.id", index=True)
    # The newest e-mail that carried it (kept on registration; no FK: e-mails point here too).
    latest_email_id: int | None = Field(default=None, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class Invoice(SQLModel, table=True):
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "external_id"),
        sa.Index("ix_invoice_tenant_newest", "tenant_id", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: int = _tenant_fk()
    external_id: str = Field(max_length=200)
    number: str = Field(max_length=100)
    invoice_status: InvoiceStatus = Field(default=InvoiceStatus.ISSUED, sa_type=_enum(InvoiceStatus))
    relation_id: int | None = Field(default=None, foreign_key="relation.id", index=True)
    # The newest e-mail that carried it (kept on registration; no FK: e-mails point here too).
    latest_email_id: int | None = Field(default=None, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class Email(SQLModel, table=True):
    """A sent e-mail with its projected status, kept forever (the history is not)."""

    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "external_id"),
        sa.Index("ix_email_tenant_newest", "tenant_id", "sent_at", "id"),
        sa.Index(
            "ix_email_tenant_status_newest",
            "tenant_id",
            "status",
            "sent_at",
            "id",
        ),
        sa.Index("ix_email_relation_newest", "relation_id", "sent_at", "id"),
        sa.Index("ix_email_invoice_newest", "invoice_id", "sent_at", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: int = _tenant_fk()
    external_id: str | None = Field(default=None, max_length=200)
    subject: str = Field(max_length=1000)
    recipient: str = Field(max_length=500)
    sent_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    provider_message_id: str | None = Field(default=None, max_length=500, index=True)
    tracking_id: str = Field(max_length=32, unique=True)
    relation_id: int | None = Field(default=None, foreign_key="relation.id")
    invoice_id: int | None = Field(default=None, foreign_key="invoice.id")
    status: EmailStatus = Field(default=EmailStatus.SENT, sa_type=_enum(EmailStatus))
    status_changed_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    failure_category: FailureCategory | None = Field(default=None, sa_type=_enum(FailureCategory), nullable=True)
    failure_reason: str | None = Field(default=None, max_length=2000)
    failure_smtp_code: int | None = None
    failure_occurred_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    open_count: int = 0
    first_opened_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    last_opened_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    opens_likely_automated: bool = False
    # The recipient's first spam complaint: proof of delivery, kept past the purge.
    complained_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    history_purged_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class EmailDocument(SQLModel, table=True):
    """Which documents an e-mail carried (any number per e-mail, any number of e-mails per document)."""

    __tablename__ = "email_document"
    __table_args__ = (sa.Index("ix_email_document_document", "document_id", "email_id"),)

    email_id: int = Field(foreign_key="email.id", primary_key=True, ondelete="CASCADE")
    document_id: int = Field(foreign_key="document.id", primary_key=True, ondelete="CASCADE")
    tenant_id: int = _tenant_fk()


class EmailEvent(SQLModel, table=True):
    """One event in an e-mail's history, recorded once per (e-mail, source, key)."""

    __tablename__ = "email_event"
    __table_args__ = (
        sa.UniqueConstraint("email_id", "source", "event_key"),
        sa.Index("ix_email_event_email_occurred", "email_id", "occurred_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: int = _tenant_fk()
    email_id: int = Field(foreign_key="email.id", ondelete="CASCADE")
    source: str = Field(max_length=32)
    event_key: str = Field(max_length=300)
    status: EmailStatus = Field(sa_type=_enum(EmailStatus))
    occurred_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    description: str = Field(default="", max_length=2000)
    failure_category: FailureCategory | None = Field(default=None, sa_type=_enum(FailureCategory), nullable=True)
    reason: str | None = Field(default=None, max_length=2000)
    smtp_code: int | None = None
    machine_open: bool = False
    user_agent: str | None = Field(default=None, max_length=1000)
    ip: str | None = Field(default=None, max_length=64)


class StatusChange(SQLModel, table=True):
    """The change log: one row per status change, the source of subscription cursors.

    A position is (txid, id). On PostgreSQL `txid` is the writing transaction's
    id (a column default) and readers only take rows of transactions older than
    every transaction still in flight (the snapshot's xmin), so a row can never
    become visible behind a position already handed out, however commits
    interleave. On SQLite writers are serialized, ids follow commit order, and
    txid is 0.
    """

    __tablename__ = "status_change"
    __table_args__ = (
        sa.Index("ix_status_change_tenant_id", "tenant_id", "id"),
        sa.Index("ix_status_change_position", "txid", "id"),
        sa.Index("ix_status_change_tenant_position", "tenant_id", "txid", "id"),
    )

    # BIGINT on PostgreSQL; INTEGER on SQLite, where only that aliases the rowid.
    id: int | None = Field(default=None, primary_key=True, sa_type=sa.BigInteger().with_variant(sa.Integer(), "sqlite"))
    tenant_id: int = _tenant_fk()
    email_id: int = Field(foreign_key="email.id", ondelete="CASCADE", index=True)
    previous_status: EmailStatus | None = Field(default=None, sa_type=_enum(EmailStatus), nullable=True)
    status: EmailStatus = Field(sa_type=_enum(EmailStatus))
    changed_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    recorded_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    txid: int | None = Field(
        default=None, sa_type=sa.BigInteger, nullable=False, sa_column_kwargs={"server_default": sa.FetchedValue()}
    )


class PendingEvent(SQLModel, table=True):
    """A webhook event for an e-mail not registered yet: applied on registration, or expires."""

    __tablename__ = "pending_event"
    __table_args__ = (sa.UniqueConstraint("source", "event_key"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=32)
    event_key: str = Field(max_length=300)
    provider_message_id: str | None = Field(default=None, max_length=500, index=True)
    email_ref: str | None = Field(default=None, max_length=200)
    payload: str = Field(max_length=20_000)
    # Why it is waiting, for an operator: "unregistered", or "ambiguous: 2 e-mails".
    reason: str | None = Field(default=None, max_length=200)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    expires_at: datetime = Field(sa_type=UTCDateTime, nullable=False, index=True)


class WebhookNonce(SQLModel, table=True):
    """A signature token already seen: Mailgun signs only timestamp+token, not the body,
    so a token seen again with another body is a replay and is refused."""

    __tablename__ = "webhook_nonce"
    __table_args__ = (sa.UniqueConstraint("source", "token"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=32)
    token: str = Field(max_length=200)
    body_hash: str = Field(max_length=64)
    seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False, index=True)


class TrustedDocument(SQLModel, table=True):
    """A GraphQL document a client team registered at build time, by its SHA-256 (hex).

    Shared by every replica; with `GATEWAY_TRUSTED_DOCUMENTS_ONLY` no other
    document runs. Not per tenant: the documents are the front-ends' own code.
    """

    __tablename__ = "trusted_document"

    sha256: str = Field(primary_key=True, max_length=64)
    document: str = Field(sa_type=sa.Text, nullable=False)
    registered_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
