"""E-mails, the details a click shows, their history and the E-mails connection."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.types import Info

from gateway import models, rules
from gateway.context import Context
from gateway.ids import encode_cursor, encode_id
from gateway.repositories.pages import Page

from .common import EmailTracked, Node, PageInfo
from .enums import EmailStatus, FailureCategory

if TYPE_CHECKING:
    from .items import Document, Invoice, Relation

__all__ = [
    "DeliveryFailure",
    "Email",
    "EmailConnection",
    "EmailDetails",
    "EmailEdge",
    "EmailEvent",
    "EmailStats",
    "OpenTracking",
    "SpamComplaint",
    "StatusCount",
    "email_cursor",
]


_ITEMS = "gateway.schema.types.items"


def email_cursor(email: models.Email) -> str:
    return encode_cursor("email", email.sent_at, models.stored_id(email.id))


@strawberry.type(description="Why an e-mail could not be delivered.")
class DeliveryFailure:
    category: FailureCategory = strawberry.field(description="The kind of failure.")
    reason: str = strawberry.field(description="Human-readable reason, as the provider or receiving server gave it.")
    smtp_code: int | None = strawberry.field(description="The SMTP reply code, when one was given.")
    occurred_at: datetime = strawberry.field(description="When the failure happened.")


@strawberry.type(description="What is known of the tracking image being fetched.")
class OpenTracking:
    count: int = strawberry.field(description="How many times the tracking image was fetched.")
    first_opened_at: datetime | None = strawberry.field(description="The first fetch; null if none.")
    last_opened_at: datetime | None = strawberry.field(description="The latest fetch; null if none.")
    likely_automated: bool = strawberry.field(
        description="True when every open so far looks like an automatic fetch (privacy proxy, prefetch, scanner)."
    )
    notice: str = strawberry.field(
        description="Plain-language caveat: an open is not proof of reading, and is no legal evidence."
    )


@strawberry.type(
    description="The recipient reported the e-mail as spam: it was delivered, and the address is now suppressed."
)
class SpamComplaint:
    complained_at: datetime = strawberry.field(
        description="When the recipient reported it (the first report, if several)."
    )
    address_suppressed: bool = strawberry.field(
        description=(
            "True: the provider has put the address on its suppression list, so it drops later e-mails "
            "to it without a delivery attempt (SendGrid, Mailgun, Postmark and Resend do so on every "
            "complaint; Amazon SES through its account-level suppression list, on by default)."
        )
    )
    notice: str = strawberry.field(
        description="Plain-language explanation of what the complaint means for this address."
    )


@strawberry.type(description="One event in an e-mail's history.")
class EmailEvent:
    model: strawberry.Private[models.EmailEvent]

    @strawberry.field(description="The global id of the event.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(encode_id("EmailEvent", models.stored_id(self.model.id)))

    @strawberry.field(description="The status this event points to.")
    def status(self) -> EmailStatus:
        return self.model.status

    @strawberry.field(description="When it happened, as the source reported it.")
    def occurred_at(self) -> datetime:
        return self.model.occurred_at

    @strawberry.field(description="When the gateway received it.")
    def received_at(self) -> datetime:
        return self.model.received_at

    @strawberry.field(description="Where the event came from: sendgrid, mailgun, postmark, ses, resend, pixel, api.")
    def source(self) -> str:
        return self.model.source

    @strawberry.field(description="What happened, in words.")
    def description(self) -> str:
        return self.model.description

    @strawberry.field(
        description="For a failure or a deferral: its category; SPAM_COMPLAINT for a spam complaint (a delivery)."
    )
    def failure_category(self) -> FailureCategory | None:
        return self.model.failure_category

    @strawberry.field(description="For a failure or a deferral: the SMTP reply code, when given.")
    def smtp_code(self) -> int | None:
        return self.model.smtp_code

    @strawberry.field(description="For an open: true when it looks like an automatic fetch.")
    def likely_automated(self) -> bool:
        return self.model.machine_open


@strawberry.type(description="What a click on a line shows: status, failure, opens and history.")
class EmailDetails:
    model: strawberry.Private[models.Email]

    @strawberry.field(description="The global id of the e-mail.")
    def email_id(self) -> strawberry.ID:
        return strawberry.ID(encode_id("Email", models.stored_id(self.model.id)))

    @strawberry.field(description="The last known status.")
    def status(self) -> EmailStatus:
        return self.model.status

    @strawberry.field(description="When the e-mail reached its current status.")
    def status_changed_at(self) -> datetime:
        return self.model.status_changed_at

    @strawberry.field(description="The subject line.")
    def subject(self) -> str:
        return self.model.subject

    @strawberry.field(description="The recipient's address.")
    def recipient(self) -> str:
        return self.model.recipient

    @strawberry.field(description="When the sending application handed it to the provider.")
    def sent_at(self) -> datetime:
        return self.model.sent_at

    @strawberry.field(description="When the recipient's server accepted it; null if not known.")
    def delivered_at(self) -> datetime | None:
        return self.model.delivered_at

    @strawberry.field(description="Why it failed, when the status is DELIVERY_FAILED; null otherwise.")
    def failure(self) -> DeliveryFailure | None:
        m = self.model
        category, occurred_at = m.failure_category, m.failure_occurred_at
        if not rules.failure_shown(m.status, category, occurred_at):
            return None
        if category is None or occurred_at is None:  # never, once shown: the rule requires both
            return None
        return DeliveryFailure(
            category=category,
            reason=m.failure_reason or "",
            smtp_code=m.failure_smtp_code,
            occurred_at=occurred_at,
        )

    @strawberry.field(
        description=(
            "The recipient's spam complaint; null when there is none. "
            "A complaint is no failure: the status stays what the delivery gave."
        )
    )
    def complaint(self) -> SpamComplaint | None:
        if self.model.complained_at is None:
            return None
        return SpamComplaint(
            complained_at=self.model.complained_at, address_suppressed=True, notice=rules.COMPLAINT_NOTICE
        )

    @strawberry.field(description="Opens of the tracking image, with the caveat that goes with them.")
    def opens(self) -> OpenTracking:
        m = self.model
        return OpenTracking(
            count=m.open_count,
            first_opened_at=m.first_opened_at,
            last_opened_at=m.last_opened_at,
            likely_automated=m.opens_likely_automated,
            notice=rules.OPEN_NOTICE,
        )

    @strawberry.field(description="Detailed event history, oldest first; empty once the retention window has passed.")
    async def history(self, info: Info[Context, None]) -> list[EmailEvent]:
        events = await info.context.loaders.events_by_email_id.load(models.stored_id(self.model.id))
        return [EmailEvent(model=e) for e in events]

    @strawberry.field(description="Until when the detailed history is kept.")
    def history_available_until(self, info: Info[Context, None]) -> datetime:
        return rules.history_available_until(self.model.sent_at, info.context.settings.history_days)

    @strawberry.field(description="True once the detailed history has been purged or its window has passed.")
    def history_expired(self, info: Info[Context, None]) -> bool:
        m = self.model
        return rules.history_expired(
            m.sent_at, m.history_purged_at, info.context.settings.history_days, datetime.now(UTC)
        )


@strawberry.type(description="A sent e-mail, as the E-mails screen lists it.")
class Email(Node, EmailTracked):
    model: strawberry.Private[models.Email]

    @strawberry.field(description="The global id of the e-mail.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(encode_id("Email", models.stored_id(self.model.id)))

    @strawberry.field(description="The sending application's own id for it.")
    def external_id(self) -> str | None:
        return self.model.external_id

    @strawberry.field(description="The subject line.")
    def subject(self) -> str:
        return self.model.subject

    @strawberry.field(description="The recipient's address.")
    def recipient(self) -> str:
        return self.model.recipient

    @strawberry.field(description="When it was handed to the provider.")
    def sent_at(self) -> datetime:
        return self.model.sent_at

    @strawberry.field(description="The last known status.")
    def email_status(self) -> EmailStatus:
        return self.model.status

    @strawberry.field(description="What a click on the line shows.")
    def details(self) -> EmailDetails:
        return EmailDetails(model=self.model)

    @strawberry.field(description="The relation (client) it was sent to; null if none was given.")
    async def relation(self, info: Info[Context, None]) -> Annotated[Relation, strawberry.lazy(_ITEMS)] | None:
        from .items import Relation

        return (
            Relation.maybe(await info.context.loaders.relation_by_id.load(self.model.relation_id))
            if self.model.relation_id
            else None
        )

    @strawberry.field(description="The documents it carried.")
    async def documents(self, info: Info[Context, None]) -> list[Annotated[Document, strawberry.lazy(_ITEMS)]]:
        from .items import Document

        return [
            Document(model=d)
            for d in await info.context.loaders.documents_by_email_id.load(models.stored_id(self.model.id))
        ]

    @strawberry.field(description="The invoice it carried; null if none.")
    async def invoice(self, info: Info[Context, None]) -> Annotated[Invoice, strawberry.lazy(_ITEMS)] | None:
        from .items import Invoice

        return (
            Invoice.maybe(await info.context.loaders.invoice_by_id.load(self.model.invoice_id))
            if self.model.invoice_id
            else None
        )

    @classmethod
    def maybe(cls, model: models.Email | None) -> Email | None:
        return None if model is None else cls(model=model)


@strawberry.type(description="An e-mail in a list, with its cursor.")
class EmailEdge:
    cursor: str = strawberry.field(description="Pass it as `after` to get the e-mails after this one.")
    node: Email = strawberry.field(description="The e-mail.")


@strawberry.type(description="A page of e-mails, newest first.")
class EmailConnection:
    edges: list[EmailEdge] = strawberry.field(description="The e-mails of this page.")
    page_info: PageInfo = strawberry.field(description="Where this page stands.")
    count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field(description="How many e-mails match, over all pages.")
    async def total_count(self) -> int:
        return await self.count()

    @classmethod
    def of(cls, page: Page[models.Email], count: Callable[[], Awaitable[int]]) -> EmailConnection:
        edges = [EmailEdge(cursor=email_cursor(e), node=Email(model=e)) for e in page.items]
        return cls(edges=edges, page_info=PageInfo.of(page, [e.cursor for e in edges]), count=count)


@strawberry.type(description="How many e-mails have one status.")
class StatusCount:
    status: EmailStatus = strawberry.field(description="The status.")
    count: int = strawberry.field(description="How many e-mails have it.")


@strawberry.type(description="Counts for an integrator's dashboard.")
class EmailStats:
    total: int = strawberry.field(description="How many e-mails match the filter.")
    by_status: list[StatusCount] = strawberry.field(
        description="One count per status, every status listed (zero when none), in a fixed order."
    )
