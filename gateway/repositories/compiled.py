"""Repository statements as the SQL text asyncpg runs, for the compiled plans.

The plans (`gateway.fastpath.rows`) run the repositories' own statements on a
plain asyncpg connection, whose prepared-statement cache then skips parsing and
planning. Each statement object is compiled once; the values `email_params` /
`item_params` give are the ones asyncpg takes as they are (enum names, aware
datetimes, lists for `= ANY`), so no type processing is left to SQLAlchemy.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import Select
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg

__all__ = ["asyncpg_text"]

_ASYNCPG = PGDialect_asyncpg()  # type: ignore[no-untyped-call]  # SQLAlchemy leaves dialect constructors untyped


@lru_cache(maxsize=1024)
def asyncpg_text(statement: Select[Any]) -> tuple[str, tuple[str, ...]]:
    """A statement's SQL text ($1, $2...) and the parameter name of each position."""
    compiled = statement.compile(dialect=_ASYNCPG)
    return str(compiled), tuple(compiled.positiontup or ())
