"""`node(id)`: any object by its global id, within the caller's tenant."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.types import Info

from gateway.context import Context
from gateway.errors import BadInput
from gateway.ids import decode_id
from gateway.schema.types.common import Node
from gateway.schema.types.emails import Email
from gateway.schema.types.items import Document, EmailInteraction, Invoice, Relation

__all__ = ["node"]


async def node(
    info: Info[Context, None],
    id: Annotated[strawberry.ID, strawberry.argument(description="A global id.")],  # noqa: A002
) -> Node | None:
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

