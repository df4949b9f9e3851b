"""A screen's page and its count, read through the request's database access."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from gateway.context import Context
from gateway.repositories.pages import Page, PageRequest

T = TypeVar("T")

__all__ = ["paged"]


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
