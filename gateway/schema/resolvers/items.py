"""Root fields of the Documents and Invoicing screens and of a relation's timeline."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.types import Info

from gateway import models
from gateway.context import Context
from gateway.errors import NotFound
from gateway.ids import decode_id_of
from gateway.repositories import items as repo
from gateway.schema.arguments import AFTER, BEFORE, FIRST, LAST, page_request
from gateway.schema.inputs import DocumentFilter, InvoiceFilter, item_query
from gateway.schema.types.items import DocumentConnection, InvoiceConnection, Relation, RelationTimeline

from .pages import paged

__all__ = ["documents", "invoices", "relation_timeline"]


async def documents(
    info: Info[Context, None],
    filter: Annotated[  # noqa: A002
        DocumentFilter | None, strawberry.argument(description="Which documents to list.")
    ] = None,
    first: Annotated[int | None, strawberry.argument(description=FIRST)] = None,
    after: Annotated[str | None, strawberry.argument(description=AFTER)] = None,
    last: Annotated[int | None, strawberry.argument(description=LAST)] = None,
    before: Annotated[str | None, strawberry.argument(description=BEFORE)] = None,
) -> DocumentConnection:
    query = item_query(filter)  # the filter is checked before the page, as always
    page = page_request(info.context, first, after, "document", last=last, before=before)
    found, count = await paged(info.context, query, page, repo.list_documents, repo.count_documents)
    return DocumentConnection.of(found, count)


async def invoices(
    info: Info[Context, None],
    filter: Annotated[  # noqa: A002
        InvoiceFilter | None, strawberry.argument(description="Which invoices to list.")
    ] = None,
    first: Annotated[int | None, strawberry.argument(description=FIRST)] = None,
    after: Annotated[str | None, strawberry.argument(description=AFTER)] = None,
    last: Annotated[int | None, strawberry.argument(description=LAST)] = None,
    before: Annotated[str | None, strawberry.argument(description=BEFORE)] = None,
) -> InvoiceConnection:
    query = item_query(filter)  # the filter is checked before the page, as always
    page = page_request(info.context, first, after, "invoice", last=last, before=before)
    found, count = await paged(info.context, query, page, repo.list_invoices, repo.count_invoices)
    return InvoiceConnection.of(found, count)


async def relation_timeline(
    info: Info[Context, None],
    relation_id: Annotated[strawberry.ID, strawberry.argument(description="The relation's global id.")],
    first: Annotated[int | None, strawberry.argument(description=FIRST)] = None,
    after: Annotated[str | None, strawberry.argument(description=AFTER)] = None,
    last: Annotated[int | None, strawberry.argument(description=LAST)] = None,
    before: Annotated[str | None, strawberry.argument(description=BEFORE)] = None,
) -> RelationTimeline:
    ctx = info.context
    page = page_request(ctx, first, after, "email", last=last, before=before)
    relation = await ctx.loaders.relation_by_id.load(decode_id_of(relation_id, "Relation"))
    if relation is None:  # missing and foreign read the same
        raise NotFound(f"Relation {relation_id!r} not found")
    found = await ctx.loaders.emails_by_relation_id.load((models.stored_id(relation.id), page))
    return RelationTimeline.of(Relation(model=relation), found)
