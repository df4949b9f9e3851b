"""The mutations: registering a sent e-mail and recording an event from a custom source."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.types import Info

from gateway import ingest, models
from gateway.context import Context
from gateway.enums import EmailStatus, FailureCategory, InvoiceStatus, Scope
from gateway.errors import BadInput, NotFound
from gateway.events import IncomingEvent
from gateway.ids import decode_id_of
from gateway.models import utcnow
from gateway.pixel import tracking_url
from gateway.repositories import emails as emails_repo
from gateway.repositories.registration import DocumentData, InvoiceData, Registration, RelationData
from gateway.schema.inputs import RecordEmailEventInput, RegisterEmailInput
from gateway.schema.types.emails import Email

__all__ = ["RegisterEmailPayload", "record_email_event", "register_email"]

_MAX_DOCUMENTS = 100


@strawberry.type(description="The registered e-mail and the tracking image to embed in it.")
class RegisterEmailPayload:
    email: Email = strawberry.field(description="The registered e-mail (the same one on a repeat).")
    tracking_pixel_url: str = strawberry.field(
        description="URL of the 1x1 tracking image to embed in the e-mail's HTML."
    )


def _text(name: str, value: str, limit: int, *, empty: bool = False) -> str:
    value = value.strip()
    if not value and not empty:
        raise BadInput(f"`{name}` must not be empty")
    if len(value) > limit:
        raise BadInput(f"`{name}` is longer than {limit} characters")
    return value


def _registration(data: RegisterEmailInput) -> Registration:
    recipient = _text("recipient", data.recipient, 500)
    if "@" not in recipient:
        raise BadInput(f"`recipient` {recipient[:100]!r} is not an e-mail address")
    documents = data.documents or []
    if len(documents) > _MAX_DOCUMENTS:
        raise BadInput(f"an e-mail carries at most {_MAX_DOCUMENTS} documents, got {len(documents)}")
    return Registration(
        external_id=_text("externalId", data.external_id, 200),
        subject=_text("subject", data.subject, 1000, empty=True),
        recipient=recipient,
        sent_at=data.sent_at or utcnow(),
        provider_message_id=_text("providerMessageId", data.provider_message_id, 500)
        if data.provider_message_id
        else None,
        relation=RelationData(
            external_id=_text("relation.externalId", data.relation.external_id, 200),
            name=_text("relation.name", data.relation.name, 500),
        )
        if data.relation
        else None,
        documents=tuple(
            DocumentData(
                external_id=_text("documents.externalId", d.external_id, 200),
                title=_text("documents.title", d.title, 500),
            )
            for d in documents
        ),
        invoice=InvoiceData(
            external_id=_text("invoice.externalId", data.invoice.external_id, 200),
            number=_text("invoice.number", data.invoice.number, 100),
            invoice_status=InvoiceStatus(data.invoice.invoice_status or InvoiceStatus.ISSUED),
        )
        if data.invoice
        else None,
    )


async def register_email(
    info: Info[Context, None],
    input: Annotated[RegisterEmailInput, strawberry.argument(description="The e-mail sent.")],  # noqa: A002
) -> RegisterEmailPayload:
    ctx = info.context
    ctx.require(Scope.WRITE)
    registration = _registration(input)
    tenant_id = ctx.tenant_id
    email = await ctx.db.run(
        lambda session: ingest.register(
            session=session,
            tenant_id=tenant_id,
            data=registration,
            publisher=ctx.broker,
            counter=ctx.change_counter,
        )
    )
    url = tracking_url(str(ctx.settings.public_url), ctx.signing_key, email.tracking_id)
    return RegisterEmailPayload(email=Email(model=email), tracking_pixel_url=url)


def _event(data: RecordEmailEventInput, now: datetime) -> IncomingEvent:
    status = EmailStatus(data.status)
    category = FailureCategory(data.failure_category) if data.failure_category is not None else None
    if status is EmailStatus.DELIVERY_FAILED:
        category = category or FailureCategory.OTHER
    elif category is not None:
        raise BadInput("`failureCategory` goes with status DELIVERY_FAILED only")
    if data.smtp_code is not None and not 200 <= data.smtp_code <= 599:
        raise BadInput(f"`smtpCode` must be an SMTP reply code (200-599), got {data.smtp_code}")
    if data.occurred_at > now.replace(year=now.year + 1):
        raise BadInput("`occurredAt` is more than a year in the future")
    description = _text("description", data.description or "", 2000, empty=True)
    return IncomingEvent(
        source="api",
        key=_text("eventKey", data.event_key, 200),
        status=status,
        occurred_at=data.occurred_at,
        description=description or f"{status.value.replace('_', ' ').capitalize()} (reported by API)",
        failure_category=category,
        reason=description or None if category else None,
        smtp_code=data.smtp_code,
    )


async def record_email_event(
    info: Info[Context, None],
    input: Annotated[RecordEmailEventInput, strawberry.argument(description="The event.")],  # noqa: A002
) -> Email:
    ctx = info.context
    ctx.require(Scope.WRITE)
    event = _event(input, utcnow())
    pk = decode_id_of(input.email_id, "Email")
    tenant_id = ctx.tenant_id

    async def record(session: AsyncSession) -> models.Email:
        found = await emails_repo.list_emails_by_ids(session=session, tenant_id=tenant_id, ids=[pk])
        if not found:
            raise NotFound(f"Email {input.email_id!r} not found")
        return await ingest.record(
            session=session, email=found[0], events=[event], publisher=ctx.broker, counter=ctx.change_counter
        )

    return Email(model=await ctx.db.run(record))
