"""Turning `first`/`after` arguments into a page request, with clear errors."""

from __future__ import annotations

from gateway.context import Context
from gateway.ids import decode_cursor
from gateway.repositories.pages import PageRequest, check_first

__all__ = ["page_request"]


def page_request(context: Context, first: int | None, after: str | None, kind: str) -> PageRequest:
    """A PageRequest within the configured maximum page size; BadInput on a bad cursor."""
    size = check_first(first, context.settings.max_page_size)
    return PageRequest(first=size, after=decode_cursor(after, kind) if after is not None else None)
