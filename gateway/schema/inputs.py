"""Input types of the filters and mutations, and the repositories' queries the filters make."""

from __future__ import annotations

from datetime import datetime

import strawberry

from gateway import enums
from gateway.ids import decode_id_of
from gateway.repositories.emails import EmailQuery
from gateway.repositories.items import ItemQuery

from .types.enums import EmailStatus, FailureCategory, InvoiceStatus

__all__ = [
    "DocumentFilter",
    "DocumentRef",
    "EmailFilter",
    "EmailStatsFilter",
    "EmailStatusChangeFilter",
    "InvoiceFilter",
    "InvoiceRef",
    "RecordEmailEventInput",
    "RegisterEmailInput",
    "email_query",
    "item_query",
    "RelationRef",
]


@strawberry.input(description="The E-mails screen's filter; the parts given combine with AND.")
class EmailFilter:
    statuses: list[EmailStatus] | None = strawberry.field(
        default=None, description="Only e-mails whose status is one of these."
    )
    relation_id: strawberry.ID | None = strawberry.field(
        default=None, description="Only e-mails sent to this relation (its global id)."
    )
    sent_after: datetime | None = strawberry.field(default=None, description="Only e-mails sent at or after this time.")
    sent_before: datetime | None = strawberry.field(default=None, description="Only e-mails sent before this time.")
    search: str | None = strawberry.field(default=None, description="Matches subject or recipient, case-insensitive.")
    complained: bool | None = strawberry.field(
        default=None,
        description="true: only e-mails the recipient reported as spam; false: only the others.",
    )


@strawberry.input(description="The Documents screen's filter; the parts given combine with AND.")
class DocumentFilter:
    email_statuses: list[EmailStatus] | None = strawberry.field(
        default=None, description="Only documents whose latest e-mail has one of these statuses."
    )
    relation_id: strawberry.ID | None = strawberry.field(
        default=None, description="Only documents of this relation (its global id)."
    )


@strawberry.input(description="The Invoicing screen's filter; the parts given combine with AND.")
class InvoiceFilter:
    email_statuses: list[EmailStatus] | None = strawberry.field(
        default=None, description="Only invoices whose latest e-mail has one of these statuses."
    )
    invoice_statuses: list[InvoiceStatus] | None = strawberry.field(
        default=None, description="Only invoices in one of these states."
    )
    relation_id: strawberry.ID | None = strawberry.field(
        default=None, description="Only invoices of this relation (its global id)."
    )


@strawberry.input(description="Which e-mails to count.")
class EmailStatsFilter:
    relation_id: strawberry.ID | None = strawberry.field(
        default=None, description="Only e-mails sent to this relation (its global id)."
    )
    sent_after: datetime | None = strawberry.field(default=None, description="Only e-mails sent at or after this time.")
    sent_before: datetime | None = strawberry.field(default=None, description="Only e-mails sent before this time.")


@strawberry.input(description="A relation, found or created by its external id.")
class RelationRef:
    external_id: str = strawberry.field(description="The sending application's id for the relation.")
    name: str = strawberry.field(description="The relation's name (updated when it changed).")


@strawberry.input(description="A document, found or created by its external id.")
class DocumentRef:
    external_id: str = strawberry.field(description="The sending application's id for the document.")
    title: str = strawberry.field(description="The document's title (updated when it changed).")


@strawberry.input(description="An invoice, found or created by its external id.")
class InvoiceRef:
    external_id: str = strawberry.field(description="The sending application's id for the invoice.")
    number: str = strawberry.field(description="The invoice number.")
    invoice_status: InvoiceStatus | None = strawberry.field(
        default=InvoiceStatus.ISSUED,
        description="Where the invoice stands (updated when it changed).",
    )


@strawberry.input(description="An e-mail that the sending application has just handed to its provider.")
class RegisterEmailInput:
    external_id: str = strawberry.field(
        description="The sending application's own id: registering it twice returns the same e-mail."
    )
    subject: str = strawberry.field(description="The subject line.")
    recipient: str = strawberry.field(description="The recipient's address.")
    sent_at: datetime | None = strawberry.field(default=None, description="When it was sent; now if omitted.")
    provider_message_id: str | None = strawberry.field(
        default=None, description="The provider's message id, used to match its webhook events."
    )
    relation: RelationRef | None = strawberry.field(default=None, description="The relation it was sent to.")
    documents: list[DocumentRef] | None = strawberry.field(default=None, description="The documents it carried.")
    invoice: InvoiceRef | None = strawberry.field(default=None, description="The invoice it carried.")


@strawberry.input(description="An event from a source that has no webhook of its own.")
class RecordEmailEventInput:
    email_id: strawberry.ID = strawberry.field(description="The global id of the e-mail.")
    status: EmailStatus = strawberry.field(description="The status the event reports.")
    occurred_at: datetime = strawberry.field(description="When it happened.")
    event_key: str = strawberry.field(description="Idempotency key: the same key twice records one event.")
    description: str | None = strawberry.field(default=None, description="What happened, in words.")
    failure_category: FailureCategory | None = strawberry.field(
        default=None, description="For DELIVERY_FAILED: the kind of failure (OTHER if omitted)."
    )
    smtp_code: int | None = strawberry.field(default=None, description="For DELIVERY_FAILED: the SMTP reply code.")


@strawberry.input(description="Which status changes to receive; the parts given combine with AND.")
class EmailStatusChangeFilter:
    email_ids: list[strawberry.ID] | None = strawberry.field(default=None, description="Only these e-mails.")
    relation_id: strawberry.ID | None = strawberry.field(
        default=None, description="Only e-mails sent to this relation."
    )
    document_id: strawberry.ID | None = strawberry.field(
        default=None, description="Only e-mails that carried this document."
    )
    invoice_id: strawberry.ID | None = strawberry.field(
        default=None, description="Only e-mails that carried this invoice."
    )
    statuses: list[EmailStatus] | None = strawberry.field(
        default=None, description="Only changes to one of these statuses."
    )


def email_query(f: EmailFilter | EmailStatsFilter | None) -> EmailQuery:
    """The repositories' query for an E-mails filter (ids decoded: BadInput on a foreign kind)."""
    if f is None:
        return EmailQuery()
    statuses = getattr(f, "statuses", None)
    return EmailQuery(
        statuses=tuple(enums.EmailStatus(s) for s in statuses) if statuses is not None else None,
        relation_id=decode_id_of(f.relation_id, "Relation") if f.relation_id is not None else None,
        sent_after=f.sent_after,
        sent_before=f.sent_before,
        search=getattr(f, "search", None) or None,
        complained=getattr(f, "complained", None),
    )


def item_query(f: DocumentFilter | InvoiceFilter | None) -> ItemQuery:
    """The repositories' query for a Documents or Invoicing filter."""
    if f is None:
        return ItemQuery()
    invoice_statuses = getattr(f, "invoice_statuses", None)
    return ItemQuery(
        email_statuses=tuple(enums.EmailStatus(s) for s in f.email_statuses) if f.email_statuses is not None else None,
        invoice_statuses=tuple(enums.InvoiceStatus(s) for s in invoice_statuses)
        if invoice_statuses is not None
        else None,
        relation_id=decode_id_of(f.relation_id, "Relation") if f.relation_id is not None else None,
    )
