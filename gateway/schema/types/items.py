"""Relations, documents, invoices and a relation's timeline."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated

import strawberry
from strawberry.types import Info

from gateway import models
from gateway.context import Context
from gateway.ids import encode_cursor, encode_id
from gateway.repositories.pages import Page
from gateway.schema.arguments import AFTER, BEFORE, FIRST, LAST, page_request

from .common import EmailTracked, Node, PageInfo
from .emails import Email, EmailConnection, EmailDetails, email_cursor
from .enums import EmailStatus, InvoiceStatus

__all__ = [
    "Document",
    "DocumentConnection",
    "EmailInteraction",
    "Invoice",
    "InvoiceConnection",
    "Relation",
    "RelationTimeline",
    "TimelineEdge",
    "TimelineEntry",
]


async def _latest_email(info: Info[Context, None], latest_email_id: int | None) -> models.Email | None:
    if latest_email_id is None:
        return None
    return await info.context.loaders.email_by_id.load(latest_email_id)


@strawberry.type(description="A client of the accounting office.")
class Relation(Node):
    model: strawberry.Private[models.Relation]

    @strawberry.field(description="The global id of the relation.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(encode_id("Relation", models.stored_id(self.model.id)))

    @strawberry.field(description="The sending application's own id for the relation.")
    def external_id(self) -> str:
        return self.model.external_id

    @strawberry.field(description="The relation's name.")
    def name(self) -> str:
        return self.model.name

    @strawberry.field(description="The relation's e-mail interactions, newest first.")
    async def timeline(
        self,
        info: Info[Context, None],
        first: Annotated[int | None, strawberry.argument(description=FIRST)] = None,
        after: Annotated[str | None, strawberry.argument(description=AFTER)] = None,
        last: Annotated[int | None, strawberry.argument(description=LAST)] = None,
        before: Annotated[str | None, strawberry.argument(description=BEFORE)] = None,
    ) -> RelationTimeline:
        page = page_request(info.context, first, after, "email", last=last, before=before)
        found = await info.context.loaders.emails_by_relation_id.load((models.stored_id(self.model.id), page))
        return RelationTimeline.of(self, found)

    @classmethod
    def maybe(cls, model: models.Relation | None) -> Relation | None:
        return None if model is None else cls(model=model)


@strawberry.type(description="A document of the accounting office, as the Documents screen lists it.")
class Document(Node, EmailTracked):
    model: strawberry.Private[models.Document]

    @strawberry.field(description="The global id of the document.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(encode_id("Document", models.stored_id(self.model.id)))

    @strawberry.field(description="The sending application's own id for the document.")
    def external_id(self) -> str:
        return self.model.external_id

    @strawberry.field(description="The document's title.")
    def title(self) -> str:
        return self.model.title

    @strawberry.field(description="The relation the document belongs to; null if none.")
    async def relation(self, info: Info[Context, None]) -> Relation | None:
        if self.model.relation_id is None:
            return None
        return Relation.maybe(await info.context.loaders.relation_by_id.load(self.model.relation_id))

    @strawberry.field(description="Status of the latest e-mail that carried this document; null if never e-mailed.")
    async def email_status(self, info: Info[Context, None]) -> EmailStatus | None:
        email = await _latest_email(info, self.model.latest_email_id)
        return email.status if email else None

    @strawberry.field(description="Details of the latest e-mail that carried it; null if never e-mailed.")
    async def details(self, info: Info[Context, None]) -> EmailDetails | None:
        email = await _latest_email(info, self.model.latest_email_id)
        return EmailDetails(model=email) if email else None

    @strawberry.field(description="Every e-mail that carried this document, newest first.")
    async def emails(
        self,
        info: Info[Context, None],
        first: Annotated[int | None, strawberry.argument(description=FIRST)] = None,
        after: Annotated[str | None, strawberry.argument(description=AFTER)] = None,
        last: Annotated[int | None, strawberry.argument(description=LAST)] = None,
        before: Annotated[str | None, strawberry.argument(description=BEFORE)] = None,
    ) -> EmailConnection:
        loaders = info.context.loaders
        page = page_request(info.context, first, after, "email", last=last, before=before)
        document_id = models.stored_id(self.model.id)
        found = await loaders.emails_by_document_id.load((document_id, page))
        return EmailConnection.of(found, lambda: loaders.email_count_by_document_id.load(document_id))

    @classmethod
    def maybe(cls, model: models.Document | None) -> Document | None:
        return None if model is None else cls(model=model)


@strawberry.type(description="An invoice, as the Invoicing screen lists it, with the status of its sending.")
class Invoice(Node, EmailTracked):
    model: strawberry.Private[models.Invoice]

    @strawberry.field(description="The global id of the invoice.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(encode_id("Invoice", models.stored_id(self.model.id)))

    @strawberry.field(description="The sending application's own id for the invoice.")
    def external_id(self) -> str:
        return self.model.external_id

    @strawberry.field(description="The invoice number.")
    def number(self) -> str:
        return self.model.number

    @strawberry.field(description="Where the invoice stands in the accounting application.")
    def invoice_status(self) -> InvoiceStatus:
        return self.model.invoice_status

    @strawberry.field(description="The relation the invoice is addressed to; null if none.")
    async def relation(self, info: Info[Context, None]) -> Relation | None:
        if self.model.relation_id is None:
            return None
        return Relation.maybe(await info.context.loaders.relation_by_id.load(self.model.relation_id))

    @strawberry.field(description="Status of the latest e-mail that carried this invoice; null if never e-mailed.")
    async def email_status(self, info: Info[Context, None]) -> EmailStatus | None:
        email = await _latest_email(info, self.model.latest_email_id)
        return email.status if email else None

    @strawberry.field(description="Details of the latest e-mail that carried it; null if never e-mailed.")
    async def details(self, info: Info[Context, None]) -> EmailDetails | None:
        email = await _latest_email(info, self.model.latest_email_id)
        return EmailDetails(model=email) if email else None

    @strawberry.field(description="Every e-mail that carried this invoice, newest first.")
    async def emails(
        self,
        info: Info[Context, None],
        first: Annotated[int | None, strawberry.argument(description=FIRST)] = None,
        after: Annotated[str | None, strawberry.argument(description=AFTER)] = None,
        last: Annotated[int | None, strawberry.argument(description=LAST)] = None,
        before: Annotated[str | None, strawberry.argument(description=BEFORE)] = None,
    ) -> EmailConnection:
        loaders = info.context.loaders
        page = page_request(info.context, first, after, "email", last=last, before=before)
        invoice_id = models.stored_id(self.model.id)
        found = await loaders.emails_by_invoice_id.load((invoice_id, page))
        return EmailConnection.of(found, lambda: loaders.email_count_by_invoice_id.load(invoice_id))

    @classmethod
    def maybe(cls, model: models.Invoice | None) -> Invoice | None:
        return None if model is None else cls(model=model)


@strawberry.type(description="An e-mail in a relation's timeline.")
class EmailInteraction(Node, EmailTracked):
    model: strawberry.Private[models.Email]

    @strawberry.field(description="The global id of the interaction.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(encode_id("EmailInteraction", models.stored_id(self.model.id)))

    @strawberry.field(description="When the interaction happened (the e-mail was sent).")
    def occurred_at(self) -> datetime:
        return self.model.sent_at

    @strawberry.field(description="The e-mail.")
    def email(self) -> Email:
        return Email(model=self.model)

    @strawberry.field(description="The e-mail's last known status.")
    def email_status(self) -> EmailStatus:
        return self.model.status

    @strawberry.field(description="What a click on the line shows.")
    def details(self) -> EmailDetails:
        return EmailDetails(model=self.model)


TimelineEntry = Annotated[
    EmailInteraction,
    strawberry.union("TimelineEntry", description="Something that happened with a relation."),
]


@strawberry.type(description="An entry of a relation's timeline, with its cursor.")
class TimelineEdge:
    cursor: str = strawberry.field(description="Pass it as `after` to get the entries after this one.")
    node: TimelineEntry = strawberry.field(description="The entry.")


@strawberry.type(description="A relation's timeline, newest first.")
class RelationTimeline:
    relation: Relation = strawberry.field(description="Whose timeline this is.")
    edges: list[TimelineEdge] = strawberry.field(description="The entries of this page.")
    page_info: PageInfo = strawberry.field(description="Where this page stands.")

    @classmethod
    def of(cls, relation: Relation, page: Page[models.Email]) -> RelationTimeline:
        edges = [TimelineEdge(cursor=email_cursor(e), node=EmailInteraction(model=e)) for e in page.items]
        return cls(relation=relation, edges=edges, page_info=PageInfo.of(page, [e.cursor for e in edges]))


@strawberry.type(description="A document in a list, with its cursor.")
class DocumentEdge:
    cursor: str = strawberry.field(description="Pass it as `after` to get the documents after this one.")
    node: Document = strawberry.field(description="The document.")


@strawberry.type(description="A page of documents, newest first.")
class DocumentConnection:
    edges: list[DocumentEdge] = strawberry.field(description="The documents of this page.")
    page_info: PageInfo = strawberry.field(description="Where this page stands.")
    count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field(description="How many documents match, over all pages.")
    async def total_count(self) -> int:
        return await self.count()

    @classmethod
    def of(cls, page: Page[models.Document], count: Callable[[], Awaitable[int]]) -> DocumentConnection:
        edges = [
            DocumentEdge(cursor=encode_cursor("document", None, models.stored_id(d.id)), node=Document(model=d))
            for d in page.items
        ]
        return cls(edges=edges, page_info=PageInfo.of(page, [e.cursor for e in edges]), count=count)


@strawberry.type(description="An invoice in a list, with its cursor.")
class InvoiceEdge:
    cursor: str = strawberry.field(description="Pass it as `after` to get the invoices after this one.")
    node: Invoice = strawberry.field(description="The invoice.")


@strawberry.type(description="A page of invoices, newest first.")
class InvoiceConnection:
    edges: list[InvoiceEdge] = strawberry.field(description="The invoices of this page.")
    page_info: PageInfo = strawberry.field(description="Where this page stands.")
    count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field(description="How many invoices match, over all pages.")
    async def total_count(self) -> int:
        return await self.count()

    @classmethod
    def of(cls, page: Page[models.Invoice], count: Callable[[], Awaitable[int]]) -> InvoiceConnection:
        edges = [
            InvoiceEdge(cursor=encode_cursor("invoice", None, models.stored_id(i.id)), node=Invoice(model=i))
            for i in page.items
        ]
        return cls(edges=edges, page_info=PageInfo.of(page, [e.cursor for e in edges]), count=count)
