"""Where plans get their rows: the repositories' statements, run without the ORM.

Every statement is the repositories' own (`email_page_statement`,
`item_page_statement`, ... with `email_params` / `item_params`), the ones the
resolvers run: one filter, one order, one cursor rule for both executors.

On PostgreSQL each statement is compiled once to its SQL text and run on a
pooled asyncpg connection, whose prepared-statement cache then skips parsing
and planning: no statement building, no ORM, no BEGIN/COMMIT per request. A
page there also carries its rows' lookups (`gateway.repositories.lookups`): a
screen is one statement. Other databases (SQLite, the embedded default) run the
same statements through SQLAlchemy Core, the lookups as separate statements.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any, NamedTuple, Protocol

import asyncpg
from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.repositories.compiled import asyncpg_text
from gateway.repositories.emails import (
    EmailQuery,
    email_count_statement,
    email_page_statement,
    email_params,
    email_shape,
    emails_by_ids_statement,
)
from gateway.repositories.items import (
    ItemKind,
    ItemQuery,
    documents_by_email_ids_statement,
    item_count_statement,
    item_page_statement,
    item_params,
    item_shape,
    items_by_ids_statement,
)
from gateway.repositories.lookups import Fold, with_lookups
from gateway.repositories.pages import PageRequest

__all__ = ["Fold", "Folded", "Page", "PgRows", "RepositoryRows", "RowSource", "Rows"]

# What a page carried, by lookup: {id: row or None}, or {email id: [document rows]}.
Folded = dict[str, dict[int, Any]]

_EMAIL_ORDER = ("sent_at", "id")
_ITEM_ORDER = ("id",)


class Page(NamedTuple):
    rows: list[Any]
    has_next: bool
    folded: Folded


class Rows(Protocol):
    async def email_page(
        self, query: EmailQuery, page: PageRequest, columns: Sequence[str], folds: tuple[Fold, ...]
    ) -> Page: ...
    async def email_count(self, query: EmailQuery) -> int: ...
    async def item_page(
        self, kind: ItemKind, query: ItemQuery, page: PageRequest, columns: Sequence[str], folds: tuple[Fold, ...]
    ) -> Page: ...
    async def item_count(self, kind: ItemKind, query: ItemQuery) -> int: ...
    async def items_by_ids(self, kind: ItemKind, ids: Sequence[int], columns: Sequence[str]) -> list[Any]: ...
    async def emails_by_ids(self, ids: Sequence[int], columns: Sequence[str]) -> list[Any]: ...
    async def documents_by_email_ids(self, email_ids: Sequence[int], columns: Sequence[str]) -> list[Any]: ...


class RowSource(Protocol):
    def open(self, tenant_id: int) -> contextlib.AbstractAsyncContextManager[Rows]: ...


class _Source(Protocol):
    """Runs a repository statement with its named parameters; the dialect it builds for."""

    dialect: str

    async def fetch(self, statement: Select[Any], params: dict[str, Any]) -> list[Any]: ...


class _Rows:
    """The plans' reads, as repository statements on a `_Source`."""

    def __init__(self, source: _Source, tenant_id: int, *, folds: bool) -> None:
        self._source = source
        self._tenant = tenant_id
        self._folds = folds  # whether pages carry their lookups (PostgreSQL)

    async def email_page(
        self, query: EmailQuery, page: PageRequest, columns: Sequence[str], folds: tuple[Fold, ...]
    ) -> Page:
        statement = email_page_statement(email_shape(query), page.shape, tuple(columns), self._source.dialect)
        return await self._page(statement, email_params(self._tenant, query, page), page, folds, _EMAIL_ORDER)

    async def email_count(self, query: EmailQuery) -> int:
        statement = email_count_statement(email_shape(query), self._source.dialect)
        return int((await self._source.fetch(statement, email_params(self._tenant, query)))[0]["count"])

    async def item_page(
        self, kind: ItemKind, query: ItemQuery, page: PageRequest, columns: Sequence[str], folds: tuple[Fold, ...]
    ) -> Page:
        statement = item_page_statement(kind, item_shape(query), page.shape, tuple(columns), self._source.dialect)
        return await self._page(statement, item_params(self._tenant, query, page), page, folds, _ITEM_ORDER)

    async def item_count(self, kind: ItemKind, query: ItemQuery) -> int:
        statement = item_count_statement(kind, item_shape(query), self._source.dialect)
        return int((await self._source.fetch(statement, item_params(self._tenant, query)))[0]["count"])

    async def items_by_ids(self, kind: ItemKind, ids: Sequence[int], columns: Sequence[str]) -> list[Any]:
        statement = items_by_ids_statement(kind, tuple(columns), self._source.dialect)
        return await self._source.fetch(statement, {"tenant_id": self._tenant, "ids": list(ids)})

    async def emails_by_ids(self, ids: Sequence[int], columns: Sequence[str]) -> list[Any]:
        statement = emails_by_ids_statement(tuple(columns), self._source.dialect)
        return await self._source.fetch(statement, {"tenant_id": self._tenant, "ids": list(ids)})

    async def documents_by_email_ids(self, email_ids: Sequence[int], columns: Sequence[str]) -> list[Any]:
        statement = documents_by_email_ids_statement(tuple(columns), self._source.dialect)
        return await self._source.fetch(statement, {"tenant_id": self._tenant, "email_ids": list(email_ids)})

    async def _page(
        self,
        statement: Select[Any],
        params: dict[str, Any],
        page: PageRequest,
        folds: tuple[Fold, ...],
        order: tuple[str, ...],
    ) -> Page:
        carried = folds if self._folds else ()  # otherwise the plan's lookups run one statement each
        rows, more = page.cut(await self._source.fetch(with_lookups(statement, carried, order), params))
        return Page(rows, more, _unfold(rows, carried))


def _unfold(rows: list[Any], folds: tuple[Fold, ...]) -> Folded:
    folded: Folded = {}
    for n, fold in enumerate(folds):
        key, name, columns = fold.key, f"_fold{n}", fold.columns
        found = folded.setdefault(fold.lookup, {})
        if fold.lookup == "documents_by_email":
            for row in rows:
                found[row[key]] = [dict(zip(columns, record, strict=True)) for record in row[name]]
        else:
            for row in rows:
                if row[key] is not None:
                    record = row[name]
                    found[row[key]] = dict(zip(columns, record, strict=True)) if record is not None else None
    return folded


# -- PostgreSQL: the statements' SQL text on asyncpg ------------------------------------------


class _Asyncpg:
    dialect = "postgresql"

    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection

    async def fetch(self, statement: Select[Any], params: dict[str, Any]) -> list[Any]:
        sql, names = asyncpg_text(statement)
        return list(await self._connection.fetch(sql, *(params[n] for n in names)))


class PgRows:
    """Rows from a pool of plain asyncpg connections."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @contextlib.asynccontextmanager
    async def open(self, tenant_id: int) -> AsyncIterator[Rows]:
        async with self._pool.acquire() as connection:
            yield _Rows(_Asyncpg(connection), tenant_id, folds=True)


# -- any database: SQLAlchemy Core -------------------------------------------------------------


class _Core:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection
        self.dialect = connection.dialect.name

    async def fetch(self, statement: Select[Any], params: dict[str, Any]) -> list[Any]:
        # Row mappings: the writers read columns by name, as from asyncpg's records.
        return list((await self._connection.execute(statement, params)).mappings())


class RepositoryRows:
    """Rows through SQLAlchemy Core, in autocommit: no BEGIN/COMMIT for reads."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @contextlib.asynccontextmanager
    async def open(self, tenant_id: int) -> AsyncIterator[Rows]:
        async with self._engine.connect() as plain:
            connection = await plain.execution_options(isolation_level="AUTOCOMMIT")
            yield _Rows(_Core(connection), tenant_id, folds=False)
