"""`node(id)` and `nodes(ids)`: any objects by their global ids, within the caller's tenant."""

from __future__ import annotations

import asyncio
from typing import Annotated

import strawberry
from strawberry.types import Info

from gateway.context import Context
from gateway.errors import BadInput
from gateway.ids import decode_id
from gateway.schema.types.common import Node
from gateway.schema.types.emails import Email
from gateway.schema.types.items import Document, EmailInteraction, Invoice, Relation

__all__ = ["node", "nodes"]


async def _load(info: Info[Context, None], id: str) -> Node | None:  # noqa: A002
    type_name, pk = decode_id(id)
    loaders = info.context.loaders
    if type_name == "Email":
        return Email.maybe(await loaders.email_by_id.load(pk))
    if type_name == "EmailInteraction":
        found = await loaders.email_by_id.load(pk)
        return EmailInteraction(model=found) if found else None
    if type_name == "Relation":
        return Relation.maybe(await loaders.relation_by_id.load(pk))
    if type_name == "Document":
        return Document.maybe(await loaders.document_by_id.load(pk))
    if type_name == "Invoice":
        return Invoice.maybe(await loaders.invoice_by_id.load(pk))
    raise BadInput(f"Invalid ID {id[:100]!r}")


async def node(
    info: Info[Context, None],
    id: Annotated[strawberry.ID, strawberry.argument(description="A global id.")],  # noqa: A002
) -> Node | None:
    return await _load(info, id)


async def nodes(
    info: Info[Context, None],
    ids: Annotated[
        list[strawberry.ID],
        strawberry.argument(description="Global ids (at most the server's maximum list size, 100 by default)."),
    ],
) -> list[Node | None]:
    # Every id is decoded before anything loads, so one bad id refuses the whole
    # list; the loads then go out together (one statement per kind).
    for id in ids:  # noqa: A001
        decode_id(id)
    return list(await asyncio.gather(*(_load(info, id) for id in ids)))
