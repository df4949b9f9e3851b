"""Statement helpers shared by the repositories (private to this package)."""

from __future__ import annotations

from typing import Any, TypeAlias

from sqlalchemy import Row
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["AnyRow", "Upsert", "dialect_insert"]

Upsert = postgresql.Insert | sqlite.Insert

# A Core row of any columns, read by attribute (`row.id`).
AnyRow: TypeAlias = Row[*tuple[Any, ...]]


def dialect_insert(session: AsyncSession, table: Any) -> Upsert:
    """The dialect's INSERT for `table` (a model or a Core table), which has ON CONFLICT
    on both PostgreSQL and SQLite; the generic INSERT has not."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
