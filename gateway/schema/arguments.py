"""The connections' arguments: Relay's `first`/`after` and `last`/`before`, their descriptions,
and the page request they make, with clear errors."""

from __future__ import annotations

from gateway.context import Context
from gateway.errors import BadInput
from gateway.ids import decode_cursor
from gateway.repositories.pages import PageRequest, check_first, check_size

__all__ = ["AFTER", "BEFORE", "FIRST", "LAST", "page_request"]

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
