"""Registering a sent e-mail: upsert what it carries, insert it once per external id."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel, col

from gateway import models
from gateway.enums import EmailStatus, InvoiceStatus
from gateway.events import normalize_message_id
from gateway.repositories._sql import dialect_insert
from gateway.repositories.emails import newest_first

__all__ = ["DocumentData", "InvoiceData", "Registration", "RelationData", "register_email"]


@dataclass(frozen=True, slots=True)
class RelationData:
    external_id: str
    name: str


@dataclass(frozen=True, slots=True)
class DocumentData:
    external_id: str
    title: str


@dataclass(frozen=True, slots=True)
class InvoiceData:
    external_id: str
    number: str
    invoice_status: InvoiceStatus = InvoiceStatus.ISSUED


@dataclass(frozen=True, slots=True)
class Registration:
    """What the sending application tells about an e-mail it sent."""

    external_id: str
    subject: str
    recipient: str
    sent_at: datetime
    provider_message_id: str | None = None
    relation: RelationData | None = None
    documents: Sequence[DocumentData] = field(default_factory=tuple)
    invoice: InvoiceData | None = None


async def _upsert_by_external_id(
    session: AsyncSession, model: type[SQLModel], tenant_id: int, rows: list[dict[str, Any]], updated: list[str]
) -> dict[str, int]:
    table = models.table_of(model)
    statement = dialect_insert(session, table)
    returning = statement.on_conflict_do_update(
        index_elements=["tenant_id", "external_id"],
        set_={name: statement.excluded[name] for name in updated},
    ).returning(table.c.external_id, table.c.id)
    values = [{"tenant_id": tenant_id, "created_at": models.utcnow(), **row} for row in rows]
    result = await session.execute(returning, values)
    return {row.external_id: row.id for row in result.all()}


async def _find(session: AsyncSession, tenant_id: int, external_id: str) -> models.Email | None:
    email = models.Email
    statement = select(email).where(col(email.tenant_id) == tenant_id, col(email.external_id) == external_id)
    return (await session.execute(statement)).scalar_one_or_none()


async def register_email(*, session: AsyncSession, tenant_id: int, data: Registration) -> tuple[models.Email, bool]:
    """The e-mail with this external id, and whether this call created it.

    Idempotent on the external id: a second registration returns the first one
    untouched. Relation, documents and invoice are upserted by their external ids
    (the latest name, title and invoice status win). Each document and the invoice
    remember their newest e-mail, which is what the Documents and Invoicing screens
    show. The caller commits.
    """
    existing = await _find(session, tenant_id, data.external_id)
    if existing is not None:
        return existing, False

    relation_id = None
    if data.relation is not None:
        ids = await _upsert_by_external_id(
            session,
            models.Relation,
            tenant_id,
            [{"external_id": data.relation.external_id, "name": data.relation.name}],
            ["name"],
        )
        relation_id = ids[data.relation.external_id]
    invoice_id = None
    if data.invoice is not None:
        ids = await _upsert_by_external_id(
            session,
            models.Invoice,
            tenant_id,
            [
                {
                    "external_id": data.invoice.external_id,
                    "number": data.invoice.number,
                    "invoice_status": data.invoice.invoice_status,
                    "relation_id": relation_id,
                }
            ],
            ["number", "invoice_status", "relation_id"],
        )
        invoice_id = ids[data.invoice.external_id]

    insert_email = (
        dialect_insert(session, models.Email)
        .values(
            tenant_id=tenant_id,
            external_id=data.external_id,
            subject=data.subject,
            recipient=data.recipient,
            sent_at=data.sent_at,
            provider_message_id=normalize_message_id(data.provider_message_id),
            tracking_id=secrets.token_urlsafe(16),
            relation_id=relation_id,
            invoice_id=invoice_id,
            status=EmailStatus.SENT,
            status_changed_at=data.sent_at,
            created_at=models.utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["tenant_id", "external_id"])
        .returning(col(models.Email.id))
    )
    email_id = (await session.execute(insert_email)).scalar_one_or_none()
    if email_id is None:  # a concurrent registration of the same external id won
        raced = await _find(session, tenant_id, data.external_id)
        if raced is None:
            raise RuntimeError(f"e-mail {data.external_id!r} vanished during registration")
        return raced, False

    documents = {d.external_id: d for d in data.documents}
    if documents:
        doc_ids = await _upsert_by_external_id(
            session,
            models.Document,
            tenant_id,
            [{"external_id": d.external_id, "title": d.title, "relation_id": relation_id} for d in documents.values()],
            ["title", "relation_id"],
        )
        await session.execute(
            models.table_of(models.EmailDocument).insert(),
            [{"email_id": email_id, "document_id": d, "tenant_id": tenant_id} for d in doc_ids.values()],
        )
        await _refresh_latest_document_emails(session, list(doc_ids.values()))
    if invoice_id is not None:
        await _refresh_latest_invoice_email(session, invoice_id)

    email = await session.get(models.Email, email_id)
    if email is None:
        raise RuntimeError(f"e-mail {email_id} vanished during registration")
    return email, True


async def _refresh_latest_document_emails(session: AsyncSession, document_ids: list[int]) -> None:
    # The document rows are locked by the upsert above, so this statement sees
    # every other committed link to them: concurrent registrations cannot both win.
    link, email, doc = models.EmailDocument, models.Email, models.Document
    newest = (
        select(col(link.email_id))
        .join(email, col(email.id) == col(link.email_id))
        .where(col(link.document_id) == col(doc.id))
        .order_by(*newest_first())
        .limit(1)
        .scalar_subquery()
    )
    await session.execute(update(doc).where(col(doc.id).in_(document_ids)).values(latest_email_id=newest))


async def _refresh_latest_invoice_email(session: AsyncSession, invoice_id: int) -> None:
    email, invoice = models.Email, models.Invoice
    newest = (
        select(col(email.id)).where(col(email.invoice_id) == col(invoice.id)).order_by(*newest_first()).limit(1)
    ).scalar_subquery()
    await session.execute(update(invoice).where(col(invoice.id) == invoice_id).values(latest_email_id=newest))
