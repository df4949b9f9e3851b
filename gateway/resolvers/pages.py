"""Turning `first`/`after` arguments into a page request, with clear errors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from gateway.context import Context
from gateway.ids import decode_cursor
from gateway.repositories.pages import Page, PageRequest, check_first

T = TypeVar("T")

__all__ = ["page_request", "paged"]


def page_request(context: Context, first: int | None, after: str | None, kind: str) -> PageRequest:
    """A PageRequest within the configured maximum page size; BadInput on a bad cursor."""
    size = check_first(first, context.settings.max_page_size)
    return PageRequest(first=size, after=decode_cursor(after, kind) if after is not None else None)


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
        return await context.db.run(
            lambda session: count(session=session, tenant_id=tenant_id, query=query)
        )

    return found, total
