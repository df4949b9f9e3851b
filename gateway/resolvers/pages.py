"""Turning Relay's `first`/`after` and `last`/`before` arguments into a page request, with clear errors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from gateway.context import Context
from gateway.errors import BadInput
from gateway.ids import decode_cursor
from gateway.repositories.pages import Page, PageRequest, check_first, check_size

T = TypeVar("T")

__all__ = ["AFTER", "BEFORE", "FIRST", "LAST", "page_request", "paged"]

FIRST = (
    "How many items to return from the top, or after `after` (at most the server's maximum page size, "
    "100 by default; 50 when neither `first` nor `last` is given)."
)
AFTER = "Return the items after this cursor (`pageInfo.endCursor` of the previous page)."
LAST = "How many items to return from the end, or before `before` (backward pagination; not with `first`)."
BEFORE = "Return the items before this cursor (`pageInfo.startCursor` of the next page)."


def page_request(
    context: Context,
    first: int | None,
    after: str | None,
    kind: str,
    *,
    last: int | None = None,
    before: str | None = None,
) -> PageRequest:
    """A PageRequest within the configured maximum page size; BadInput on a bad cursor.

    `first` and `last` together are refused: Relay allows them but the page they
    make (the last rows of the first ones) is one no client means to ask for.
    """
    maximum = context.settings.max_page_size
    if first is not None and last is not None:
        raise BadInput("`first` and `last` cannot be used together: page forwards or backwards")
    return PageRequest(
        first=check_size("last", last, maximum) if last is not None else check_first(first, maximum),
        after=decode_cursor(after, kind) if after is not None else None,
        before=decode_cursor(before, kind) if before is not None else None,
        backward=last is not None,
    )


async def paged(
    context: Context,
    query: Any,
    page: PageRequest,
    list_page: Callable[..., Awaitable[Page[T]]],
    count: Callable[..., Awaitable[int]],
) -> tuple[Page[T], Callable[[], Awaitable[int]]]:
    """A screen's page now, and its total count only if the selection asks for it."""
    tenant_id = context.tenant_id
    found = await context.db.run(
        lambda session: list_page(session=session, tenant_id=tenant_id, query=query, page=page)
    )

    async def total() -> int:
        return await context.db.run(lambda session: count(session=session, tenant_id=tenant_id, query=query))

    return found, total
