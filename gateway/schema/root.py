"""Query, Mutation and Subscription: root fields wired to resolver functions."""

from __future__ import annotations

from collections.abc import AsyncIterator

import strawberry

from gateway.schema.resolvers import emails as _emails
from gateway.schema.resolvers import items as _items
from gateway.schema.resolvers import live as _live
from gateway.schema.resolvers import mutations as _mutations
from gateway.schema.resolvers import nodes as _nodes

from .permissions import CanRead, CanWrite
from .types.common import Node
from .types.emails import Email, EmailConnection, EmailStats
from .types.items import DocumentConnection, InvoiceConnection, RelationTimeline
from .types.live import EmailStatusChange

__all__ = ["Mutation", "Query", "Subscription"]


@strawberry.type(description="Everything a screen or a dashboard reads, within the caller's tenant.")
class Query:
    node: Node | None = strawberry.field(
        resolver=_nodes.node,
        permission_classes=[CanRead],
        description="Any object by its global id; null if it does not exist.",
    )
    nodes: list[Node | None] = strawberry.field(
        resolver=_nodes.nodes,
        permission_classes=[CanRead],
        description="Objects by their global ids, in the order asked; null where one does not exist.",
    )
    email: Email | None = strawberry.field(
        resolver=_emails.email,
        permission_classes=[CanRead],
        description="One e-mail by its global id; null if it does not exist.",
    )
    emails: EmailConnection = strawberry.field(
        resolver=_emails.emails, permission_classes=[CanRead], description="The E-mails screen: newest first."
    )
    documents: DocumentConnection = strawberry.field(
        resolver=_items.documents, permission_classes=[CanRead], description="The Documents screen: newest first."
    )
    invoices: InvoiceConnection = strawberry.field(
        resolver=_items.invoices, permission_classes=[CanRead], description="The Invoicing screen: newest first."
    )
    relation_timeline: RelationTimeline = strawberry.field(
        resolver=_items.relation_timeline,
        permission_classes=[CanRead],
        description="A relation's e-mail interactions, newest first.",
    )
    email_stats: EmailStats = strawberry.field(
        resolver=_emails.email_stats, permission_classes=[CanRead], description="Counts per status, for dashboards."
    )


@strawberry.type(description="What the sending application and custom sources write (needs the `write` scope).")
class Mutation:
    register_email: _mutations.RegisterEmailPayload = strawberry.mutation(
        resolver=_mutations.register_email,
        permission_classes=[CanWrite],
        description="Register a sent e-mail (idempotent on externalId); returns its tracking image URL.",
    )
    record_email_event: Email = strawberry.mutation(
        resolver=_mutations.record_email_event,
        permission_classes=[CanWrite],
        description="Record an event from a custom source (idempotent on eventKey); returns the e-mail.",
    )


@strawberry.type(description="Live status changes.")
class Subscription:
    email_status_changed: AsyncIterator[EmailStatusChange] = strawberry.subscription(
        resolver=_live.email_status_changed,
        permission_classes=[CanRead],
        description=(
            "Live status changes of the caller's tenant. With `since`, first replays every change "
            "after that cursor, then goes live: no gap, no duplicate."
        ),
    )
