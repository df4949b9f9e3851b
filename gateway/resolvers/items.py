"""Root fields of the Documents and Invoicing screens and of a relation's timeline."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.types import Info

from gateway.context import Context
from gateway.enums import EmailStatus, InvoiceStatus
from gateway.errors import NotFound
from gateway.ids import decode_id_of
from gateway.repositories import items as repo
from gateway.schema.inputs import DocumentFilter, InvoiceFilter
from gateway.schema.types.items import DocumentConnection, InvoiceConnection, Relation, RelationTimeline

from .emails import AFTER, FIRST
from .pages import page_request

__all__ = ["documents", "invoices", "item_query", "relation_timeline"]


def item_query(f: DocumentFilter | InvoiceFilter | None) -> repo.ItemQuery:
    if f is None:
        return repo.ItemQuery()
    invoice_statuses = getattr(f, "invoice_statuses", None)
    return repo.ItemQuery(
        email_statuses=tuple(EmailStatus(s) for s in f.email_statuses) if f.email_statuses is not None else None,
        invoice_statuses=tuple(InvoiceStatus(s) for s in invoice_statuses) if invoice_statuses is not None else None,
        relation_id=decode_id_of(f.relation_id, "Relation") if f.relation_id is not None else None,
    )


async def documents(
    info: Info[Context, None],
    filter: Annotated[  # noqa: A002
        DocumentFilter | None, strawberry.argument(description="Which documents to list.")
    ] = None,
    first: Annotated[int | None, strawberry.argument(description=FIRST)] = 50,
    after: Annotated[str | None, strawberry.argument(description=AFTER)] = None,
) -> DocumentConnection:
    ctx = info.context
    query = item_query(filter)
    page = page_request(ctx, first, after, "document")
    async with ctx.db.session() as session:
        found = await repo.list_documents(session=session, tenant_id=ctx.tenant_id, query=query, page=page)

    async def count() -> int:
        async with ctx.db.session() as session:
            return await repo.count_documents(session=session, tenant_id=ctx.tenant_id, query=query)

    return DocumentConnection.of(found, count)


async def invoices(
    info: Info[Context, None],
    filter: Annotated[  # noqa: A002
        InvoiceFilter | None, strawberry.argument(description="Which invoices to list.")
    ] = None,
    first: Annotated[int | None, strawberry.argument(description=FIRST)] = 50,
    after: Annotated[str | None, strawberry.argument(description=AFTER)] = None,
) -> InvoiceConnection:
    ctx = info.context
    query = item_query(filter)
    page = page_request(ctx, first, after, "invoice")
    async with ctx.db.session() as session:
        found = await repo.list_invoices(session=session, tenant_id=ctx.tenant_id, query=query, page=page)

    async def count() -> int:
        async with ctx.db.session() as session:
            return await repo.count_invoices(session=session, tenant_id=ctx.tenant_id, query=query)

    return InvoiceConnection.of(found, count)


async def relation_timeline(
    info: Info[Context, None],
    relation_id: Annotated[strawberry.ID, strawberry.argument(description="The relation's global id.")],
    first: Annotated[int | None, strawberry.argument(description=FIRST)] = 50,
    after: Annotated[str | None, strawberry.argument(description=AFTER)] = None,
) -> RelationTimeline:
    ctx = info.context
    page = page_request(ctx, first, after, "email")
    relation = await ctx.loaders.relation_by_id.load(decode_id_of(relation_id, "Relation"))
    if relation is None:  # missing and foreign read the same
        raise NotFound(f"Relation {relation_id!r} not found")
    found = await ctx.loaders.emails_by_relation_id.load((relation.id, page))  # type: ignore[arg-type]
    return RelationTimeline.of(Relation(model=relation), found)
