"""Interfaces and shapes shared by every screen: Node, EmailTracked, PageInfo."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from gateway.repositories.pages import Page

from .enums import EmailStatus

if TYPE_CHECKING:
    from .emails import EmailDetails

__all__ = ["EmailTracked", "Node", "PageInfo"]


# The interfaces declare their fields as resolvers, as their implementations are: a
# declared attribute would be a dataclass field, which mypy would then ask every
# implementation's constructor for, and forbid a method to override.


@strawberry.interface(description="An object with a global id, fetchable with `node(id)`.")
class Node:
    @strawberry.field(description="The global id: opaque, stable, tenant-safe.")
    def id(self) -> strawberry.ID:
        raise NotImplementedError  # every implementation resolves it


@strawberry.interface(description="Anything a screen shows with an e-mail status: one fragment serves every screen.")
class EmailTracked:
    @strawberry.field(description="Status of the latest e-mail that carried this item; null if never e-mailed.")
    def email_status(self) -> EmailStatus | None:
        raise NotImplementedError  # every implementation resolves it

    @strawberry.field(description="What a click on the line shows; null if never e-mailed.")
    def details(self) -> Annotated[EmailDetails, strawberry.lazy("gateway.schema.types.emails")] | None:
        raise NotImplementedError  # every implementation resolves it


@strawberry.type(description="Where a page stands in the whole list (Relay cursor connections).")
class PageInfo:
    has_next_page: bool = strawberry.field(
        description="True when another page follows this one (with `last`: when it was asked for before a cursor)."
    )
    has_previous_page: bool = strawberry.field(
        description="True when a page comes before this one (with `first`: when it was asked for after a cursor)."
    )
    start_cursor: str | None = strawberry.field(
        description="Cursor of the first edge: pass it as `before` for the previous page; null when empty."
    )
    end_cursor: str | None = strawberry.field(
        description="Cursor of the last edge: pass it as `after` for the next page."
    )

    @classmethod
    def of(cls, page: Page[Any], cursors: list[str]) -> PageInfo:
        return cls(
            has_next_page=page.has_next,
            has_previous_page=page.has_previous,
            start_cursor=cursors[0] if cursors else None,
            end_cursor=cursors[-1] if cursors else None,
        )
