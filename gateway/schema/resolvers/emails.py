"""Root fields of the E-mails screen and the integrators' counts."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.types import Info

from gateway.context import Context
from gateway.enums import EmailStatus
from gateway.ids import decode_id_of
from gateway.repositories import emails as repo
from gateway.schema.arguments import AFTER, BEFORE, FIRST, LAST, page_request
from gateway.schema.inputs import EmailFilter, EmailStatsFilter, email_query
from gateway.schema.types.emails import Email, EmailConnection, EmailStats, StatusCount

from .pages import paged

__all__ = ["email", "email_stats", "emails"]


async def emails(
    info: Info[Context, None],
    filter: Annotated[  # noqa: A002  (the contract names it `filter`)
        EmailFilter | None, strawberry.argument(description="Which e-mails to list.")
    ] = None,
    first: Annotated[int | None, strawberry.argument(description=FIRST)] = None,
    after: Annotated[str | None, strawberry.argument(description=AFTER)] = None,
    last: Annotated[int | None, strawberry.argument(description=LAST)] = None,
    before: Annotated[str | None, strawberry.argument(description=BEFORE)] = None,
) -> EmailConnection:
    query = email_query(filter)  # the filter is checked before the page, as always
    page = page_request(info.context, first, after, "email", last=last, before=before)
    found, count = await paged(info.context, query, page, repo.list_emails, repo.count_emails)
    return EmailConnection.of(found, count)


async def email(
    info: Info[Context, None],
    id: Annotated[strawberry.ID, strawberry.argument(description="The global id of the e-mail.")],  # noqa: A002
) -> Email | None:
    pk = decode_id_of(id, "Email")
    return Email.maybe(await info.context.loaders.email_by_id.load(pk))


async def email_stats(
    info: Info[Context, None],
    filter: Annotated[  # noqa: A002
        EmailStatsFilter | None, strawberry.argument(description="Which e-mails to count.")
    ] = None,
) -> EmailStats:
    ctx = info.context
    query, tenant_id = email_query(filter), ctx.tenant_id
    counts = await ctx.db.run(
        lambda session: repo.count_emails_by_status(session=session, tenant_id=tenant_id, query=query)
    )
    return EmailStats(
        total=sum(counts.values()),
        by_status=[StatusCount(status=s, count=counts[s]) for s in EmailStatus],
    )
