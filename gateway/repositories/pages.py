"""Keyset pagination shared by the screens: newest first, `first` rows after a cursor."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from gateway.errors import BadInput

__all__ = ["Page", "PageRequest", "check_first"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PageRequest:
    """`first` rows strictly after the row whose sort key is `after` (None: from the top)."""

    first: int
    after: tuple[datetime | None, int] | None = None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: Sequence[T]
    has_next: bool
    has_previous: bool

    @classmethod
    def from_rows(cls, rows: Sequence[T], request: PageRequest) -> Page[T]:
        """Rows fetched with LIMIT first+1: the extra row only says there is a next page."""
        return cls(
            items=rows[: request.first],
            has_next=len(rows) > request.first,
            has_previous=request.after is not None,
        )


def check_first(first: int | None, maximum: int) -> int:
    """The page size asked for, or BadInput naming the allowed range."""
    if first is None:
        return min(50, maximum)
    if first < 0 or first > maximum:
        raise BadInput(f"`first` must be between 0 and {maximum}, got {first}")
    return first
