"""Keyset pagination shared by the screens (newest first, forwards or backwards, as Relay
pages), and the statement parts every screen uses.

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

from sqlalchemy import ColumnElement, and_, any_, bindparam, or_
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from gateway.errors import BadInput

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "Cursor",
    "Page",
    "PageRequest",
    "PageShape",
    "check_first",
    "check_size",
    "dialect_of",
    "escape_like",
    "one_of",
    "seek",
    "seek_params",
]

T = TypeVar("T")

# The sort key a cursor carries: (sent_at, id) for e-mails, (None, id) for items.
Cursor = tuple[datetime | None, int]

# Which bounds a page has and its direction: (after given, before given, backward).
PageShape = tuple[bool, bool, bool]

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

    @property
    def shape(self) -> PageShape:
        """What the page's statement depends on (its values are parameters)."""
        return (self.after is not None, self.before is not None, self.backward)

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


def seek(columns: Sequence[Any], shape: PageShape) -> tuple[list[ColumnElement[bool]], list[Any]]:
    """The WHERE conditions and ORDER BY of one page over `columns` (newest first: all descending).

    The bounds are bind parameters (`after_0`, `before_1`, ...) whose values
    `seek_params` gives, so a statement is built once per page shape. The order is
    the one the page is read in: reversed when the page goes backwards (see
    `PageRequest.cut`).
    """
    has_after, has_before, backward = shape
    conditions = []
    if has_after:
        conditions.append(_beyond(columns, "after", below=True))
    if has_before:
        conditions.append(_beyond(columns, "before", below=False))
    order = [c.asc() if backward else c.desc() for c in columns]
    return conditions, order


def seek_params(page: PageRequest, key: Callable[[Cursor], tuple[Any, ...]]) -> dict[str, Any]:
    """The values of `seek`'s bounds: `key` picks the cursor's values for the page's columns."""
    params: dict[str, Any] = {}
    for name, cursor in (("after", page.after), ("before", page.before)):
        if cursor is not None:
            params.update({f"{name}_{i}": value for i, value in enumerate(key(cursor))})
    return params


def _beyond(columns: Sequence[Any], name: str, *, below: bool) -> ColumnElement[bool]:
    # Row-value comparison spelled out, (a < x) OR (a = x AND b < y) ..., which
    # every dialect plans as a range on the (sent_at, id) index.
    values = [bindparam(f"{name}_{i}", type_=c.type) for i, c in enumerate(columns)]
    terms = []
    for i, (column, value) in enumerate(zip(columns, values, strict=True)):
        equal = [c == v for c, v in zip(columns[:i], values[:i], strict=True)]
        terms.append(and_(*equal, column < value if below else column > value))
    return or_(*terms)


def one_of(column: Any, name: str, dialect: str) -> ColumnElement[bool]:
    """`column` among the values of the list parameter `name`.

    On PostgreSQL one array parameter (`= ANY($n)`), so a statement has one text
    and one plan whatever the list's length; elsewhere an expanding IN.
    """
    # `column` is an ORM attribute (typed as its value) or a scalar subquery: Any to mypy.
    condition: ColumnElement[bool]
    if dialect == "postgresql":
        condition = column == any_(bindparam(name, type_=ARRAY(column.type)))
    else:
        condition = column.in_(bindparam(name, expanding=True))
    return condition


def dialect_of(connection: AsyncSession | AsyncConnection) -> str:
    """The name of the database a session or connection talks to ("postgresql", "sqlite")."""
    bind = connection.bind if isinstance(connection, AsyncSession) else connection
    return str(bind.dialect.name)  # type: ignore[union-attr]  # the gateway's sessions are always bound


def escape_like(text: str) -> str:
    """Text for a LIKE pattern with `/` as the escape: `/` escapes itself, `%` and `_`."""
    return text.replace("/", "//").replace("%", "/%").replace("_", "/_")


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
