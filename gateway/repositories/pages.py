"""Keyset pagination shared by the screens: newest first, forwards or backwards (Relay).

A page is `first` rows after a cursor (forwards) or `last` rows before one
(backwards). Both directions read the same index: forwards walks it in the
screen's order (every sort column descending), backwards walks it the other way
and the page is turned round before it is returned, so a page always reads
newest first whichever way it was asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, and_, or_

from gateway.errors import BadInput

__all__ = ["DEFAULT_PAGE_SIZE", "Cursor", "Page", "PageRequest", "check_first", "check_size", "seek"]

T = TypeVar("T")

# The sort key a cursor carries: (sent_at, id) for e-mails, (None, id) for items.
Cursor = tuple[datetime | None, int]

DEFAULT_PAGE_SIZE = 50


@dataclass(frozen=True, slots=True)
class PageRequest:
    """`first` rows strictly between the cursors `after` and `before` (None: no bound).

    `first` is the page size in either direction; `backward` says it counts from
    `before` (or the end) towards the top, as Relay's `last` does.
    """

    first: int
    after: Cursor | None = None
    before: Cursor | None = None
    backward: bool = False

    def cut(self, rows: Sequence[T]) -> tuple[list[T], bool]:
        """Rows fetched with LIMIT first+1 in seek order: the page newest first, and whether more lay beyond."""
        shown = list(rows[: self.first])
        if self.backward:
            shown.reverse()
        return shown, len(rows) > self.first


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: Sequence[T]
    has_next: bool
    has_previous: bool

    @classmethod
    def from_rows(cls, rows: Sequence[T], request: PageRequest) -> Page[T]:
        """Rows fetched with LIMIT first+1: the extra row only says there is a page beyond."""
        items, more = request.cut(rows)
        if request.backward:
            return cls(items=items, has_next=request.before is not None, has_previous=more)
        return cls(items=items, has_next=more, has_previous=request.after is not None)


def seek(
    columns: Sequence[Any], page: PageRequest, key: Callable[[Cursor], tuple[Any, ...]]
) -> tuple[list[ColumnElement[bool]], list[Any]]:
    """The WHERE conditions and ORDER BY of one page over `columns` (newest first: all descending).

    `key` picks the cursor's values for `columns`. The order is the one the page
    is read in: reversed when the page goes backwards (see `PageRequest.cut`).
    """
    conditions = []
    if page.after is not None:
        conditions.append(_beyond(columns, key(page.after), below=True))
    if page.before is not None:
        conditions.append(_beyond(columns, key(page.before), below=False))
    order = [c.asc() if page.backward else c.desc() for c in columns]
    return conditions, order


def _beyond(columns: Sequence[Any], values: tuple[Any, ...], *, below: bool) -> ColumnElement[bool]:
    # Row-value comparison spelled out, (a < x) OR (a = x AND b < y) ..., which
    # every dialect plans as a range on the (sent_at, id) index.
    terms = []
    for i, (column, value) in enumerate(zip(columns, values, strict=True)):
        equal = [c == v for c, v in zip(columns[:i], values[:i], strict=True)]
        terms.append(and_(*equal, column < value if below else column > value))
    return or_(*terms)


def check_size(name: str, size: int, maximum: int) -> int:
    """A page size (`first` or `last`) within range, or BadInput naming the allowed range."""
    if size < 0 or size > maximum:
        raise BadInput(f"`{name}` must be between 0 and {maximum}, got {size}")
    return size


def check_first(first: int | None, maximum: int) -> int:
    """The page size asked for, or BadInput naming the allowed range."""
    if first is None:
        return min(DEFAULT_PAGE_SIZE, maximum)
    return check_size("first", first, maximum)
