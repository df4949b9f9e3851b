"""Where plans get their rows: plain asyncpg on PostgreSQL, the repositories elsewhere.

On PostgreSQL the statements are SQL text built once per shape (which filters a
request uses) and run on one pooled asyncpg connection, whose prepared-statement
cache then skips parsing and planning: no statement building, no ORM, no
BEGIN/COMMIT per request. Other databases (SQLite, the embedded default) go
through the same repository functions as the reference, as plain row mappings.
The filtering rules are the repositories' (`EmailQuery`, `ItemQuery`); the
differential tests hold the two to the same answers.

On PostgreSQL a page also carries its rows' lookups (`Fold`): the relation, the
invoice, the documents or the newest e-mail of each row, as records from
subqueries of the page statement. A screen is then one statement, one round
trip, as PostGraphile sends it. Elsewhere the lookups are separate statements.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple, Protocol

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.repositories import emails as email_repo
from gateway.repositories import items as item_repo
from gateway.repositories.emails import EmailQuery
from gateway.repositories.items import ItemQuery
from gateway.repositories.pages import PageRequest

__all__ = ["Fold", "Folded", "Page", "PgRows", "RepositoryRows", "Rows", "RowSource"]

_TABLES = {"relation": "relation", "document": "document", "invoice": "invoice"}


@dataclass(frozen=True)
class Fold:
    """A lookup that a page may carry: which one (a `Lookups` field), the page column
    it is found by, and its columns."""

    lookup: str  # "relations", "invoices", "documents_by_email" or "latest_emails"
    key: str
    columns: tuple[str, ...]


# What a page carried, by lookup: {id: row or None}, or {email id: [document rows]}.
Folded = dict[str, dict[int, Any]]


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
        self, kind: str, query: ItemQuery, page: PageRequest, columns: Sequence[str], folds: tuple[Fold, ...]
    ) -> Page: ...
    async def item_count(self, kind: str, query: ItemQuery) -> int: ...
    async def items_by_ids(self, kind: str, ids: Sequence[int], columns: Sequence[str]) -> list[Any]: ...
    async def emails_by_ids(self, ids: Sequence[int], columns: Sequence[str]) -> list[Any]: ...
    async def documents_by_email_ids(self, email_ids: Sequence[int], columns: Sequence[str]) -> list[Any]: ...


class RowSource(Protocol):
    def open(self, tenant_id: int) -> contextlib.AbstractAsyncContextManager[Rows]: ...


# -- PostgreSQL: SQL text, asyncpg ------------------------------------------------------------


def _escape_like(text: str) -> str:
    # As SQLAlchemy's icontains(autoescape=True): "/" escapes itself, "%" and "_".
    return text.replace("/", "//").replace("%", "/%").replace("_", "/_")


class _Placeholders:
    """asyncpg's numbered parameters, $2 on ($1 is always the tenant)."""

    def __init__(self) -> None:
        self._n = 1

    def __call__(self) -> str:
        self._n += 1
        return f"${self._n}"


@lru_cache(maxsize=256)
def _email_page_sql(columns: tuple[str, ...], shape: tuple[bool | None, ...]) -> str:
    statuses, relation, after_time, before_time, search, cursor, complained = shape
    param = _Placeholders()
    where = ["tenant_id = $1"]
    if complained is not None:  # as EmailQuery.complained in gateway.repositories.emails
        where.append("complained_at IS NOT NULL" if complained else "complained_at IS NULL")
    if statuses:
        where.append(f"status = ANY({param()}::varchar[])")
    if relation:
        where.append(f"relation_id = {param()}")
    if after_time:
        where.append(f"sent_at >= {param()}")
    if before_time:
        where.append(f"sent_at < {param()}")
    if search:
        p = param()
        where.append(
            f"(lower(subject) LIKE '%' || lower({p}) || '%' ESCAPE '/' OR lower(recipient) LIKE '%' || lower({p}) || '%' ESCAPE '/')"
        )
    if cursor:
        t, i = param(), param()
        where.append(f"(sent_at < {t} OR (sent_at = {t} AND id < {i}))")
    select = ", ".join(columns) if columns else "count(*)"
    tail = f" ORDER BY sent_at DESC, id DESC LIMIT {param()}" if columns else ""
    return f"SELECT {select} FROM email WHERE {' AND '.join(where)}{tail}"


def _email_args(
    tenant_id: int, query: EmailQuery, page: PageRequest | None
) -> tuple[tuple[bool | None, ...], list[Any]]:
    args: list[Any] = [tenant_id]
    if query.statuses is not None:
        args.append([s.value for s in query.statuses])
    if query.relation_id is not None:
        args.append(query.relation_id)
    if query.sent_after is not None:
        args.append(query.sent_after)
    if query.sent_before is not None:
        args.append(query.sent_before)
    if query.search:
        args.append(_escape_like(query.search))
    has_cursor = page is not None and page.after is not None
    if has_cursor:
        args += [page.after[0], page.after[1]]  # type: ignore[union-attr]
    shape = (
        query.statuses is not None,
        query.relation_id is not None,
        query.sent_after is not None,
        query.sent_before is not None,
        bool(query.search),
        has_cursor,
        query.complained,
    )
    return shape, args


@lru_cache(maxsize=256)
def _item_sql(table: str, columns: tuple[str, ...], shape: tuple[bool, ...]) -> str:
    email_statuses, invoice_statuses, relation, cursor = shape
    param = _Placeholders()
    where = ["tenant_id = $1"]
    if relation:
        where.append(f"relation_id = {param()}")
    if invoice_statuses:
        where.append(f"invoice_status = ANY({param()}::varchar[])")
    if email_statuses:
        # The status of an item is the status of the newest e-mail that carried it.
        where.append(f"(SELECT e.status FROM email e WHERE e.id = {table}.latest_email_id) = ANY({param()}::varchar[])")
    if cursor:
        where.append(f"id < {param()}")
    select = ", ".join(columns) if columns else "count(*)"
    tail = f" ORDER BY id DESC LIMIT {param()}" if columns else ""
    return f"SELECT {select} FROM {table} WHERE {' AND '.join(where)}{tail}"


def _item_args(tenant_id: int, query: ItemQuery, page: PageRequest | None) -> tuple[tuple[bool, ...], list[Any]]:
    args: list[Any] = [tenant_id]
    if query.relation_id is not None:
        args.append(query.relation_id)
    if query.invoice_statuses is not None:
        args.append([s.value for s in query.invoice_statuses])
    if query.email_statuses is not None:
        args.append([s.value for s in query.email_statuses])
    has_cursor = page is not None and page.after is not None
    if has_cursor:
        args.append(page.after[1])  # type: ignore[union-attr]
    shape = (
        query.email_statuses is not None,
        query.invoice_statuses is not None,
        query.relation_id is not None,
        has_cursor,
    )
    return shape, args


# Each fold as a subquery of the page `p`, found by the fold's key column of `p`.
_FOLD_SQL = {
    "relations": "(SELECT ROW({columns}) FROM relation f WHERE f.tenant_id = $1 AND f.id = p.{key})",
    "invoices": "(SELECT ROW({columns}) FROM invoice f WHERE f.tenant_id = $1 AND f.id = p.{key})",
    "latest_emails": "(SELECT ROW({columns}) FROM email f WHERE f.tenant_id = $1 AND f.id = p.{key})",
    # In the order of documents_by_email_ids: by document id.
    "documents_by_email": (
        "ARRAY(SELECT ROW({columns}) FROM email_document l JOIN document f ON f.id = l.document_id "
        "WHERE l.tenant_id = $1 AND l.email_id = p.{key} ORDER BY f.id)"
    ),
}


@lru_cache(maxsize=256)
def _folded_sql(page_sql: str, order: str, folds: tuple[Fold, ...]) -> str:
    if not folds:
        return page_sql
    carried = ", ".join(
        f"{_FOLD_SQL[fold.lookup].format(columns=', '.join(f'f.{c}' for c in fold.columns), key=fold.key)} AS _fold{n}"
        for n, fold in enumerate(folds)
    )
    # The page is cut by its LIMIT first, so the subqueries run for its rows only.
    return f"SELECT p.*, {carried} FROM ({page_sql}) p ORDER BY {order}"


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


class _PgRows:
    def __init__(self, connection: asyncpg.Connection, tenant_id: int) -> None:
        self._c = connection
        self._t = tenant_id

    async def email_page(
        self, query: EmailQuery, page: PageRequest, columns: Sequence[str], folds: tuple[Fold, ...]
    ) -> Page:
        shape, args = _email_args(self._t, query, page)
        sql = _folded_sql(_email_page_sql(tuple(columns), shape), "p.sent_at DESC, p.id DESC", folds)
        return self._page(await self._c.fetch(sql, *args, page.first + 1), page.first, folds)

    async def email_count(self, query: EmailQuery) -> int:
        shape, args = _email_args(self._t, query, None)
        return int(await self._c.fetchval(_email_page_sql((), shape), *args))

    async def item_page(
        self, kind: str, query: ItemQuery, page: PageRequest, columns: Sequence[str], folds: tuple[Fold, ...]
    ) -> Page:
        shape, args = _item_args(self._t, query, page)
        sql = _folded_sql(_item_sql(_TABLES[kind], tuple(columns), shape), "p.id DESC", folds)
        return self._page(await self._c.fetch(sql, *args, page.first + 1), page.first, folds)

    @staticmethod
    def _page(rows: list[Any], first: int, folds: tuple[Fold, ...]) -> Page:
        shown = rows[:first]
        return Page(shown, len(rows) > first, _unfold(shown, folds))

    async def item_count(self, kind: str, query: ItemQuery) -> int:
        shape, args = _item_args(self._t, query, None)
        return int(await self._c.fetchval(_item_sql(_TABLES[kind], (), shape), *args))

    async def items_by_ids(self, kind: str, ids: Sequence[int], columns: Sequence[str]) -> list[Any]:
        sql = f"SELECT {', '.join(columns)} FROM {_TABLES[kind]} WHERE tenant_id = $1 AND id = ANY($2::int[])"
        return list(await self._c.fetch(sql, self._t, list(ids)))

    async def emails_by_ids(self, ids: Sequence[int], columns: Sequence[str]) -> list[Any]:
        sql = f"SELECT {', '.join(columns)} FROM email WHERE tenant_id = $1 AND id = ANY($2::int[])"
        return list(await self._c.fetch(sql, self._t, list(ids)))

    async def documents_by_email_ids(self, email_ids: Sequence[int], columns: Sequence[str]) -> list[Any]:
        wanted = ", ".join(f"d.{c}" for c in columns)
        sql = (
            f"SELECT l.email_id, {wanted} FROM email_document l JOIN document d ON d.id = l.document_id "
            "WHERE l.tenant_id = $1 AND l.email_id = ANY($2::int[]) ORDER BY l.email_id, d.id"
        )
        return list(await self._c.fetch(sql, self._t, list(email_ids)))


class PgRows:
    """Rows from a pool of plain asyncpg connections."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @contextlib.asynccontextmanager
    async def open(self, tenant_id: int) -> AsyncIterator[Rows]:
        async with self._pool.acquire() as connection:
            yield _PgRows(connection, tenant_id)


# -- any database: the repositories ----------------------------------------------------------


class _RepositoryRows:
    def __init__(self, connection: AsyncConnection, tenant_id: int) -> None:
        self._c = connection
        self._t = tenant_id

    # The folds are left to the lookups: one statement each.

    async def email_page(
        self, query: EmailQuery, page: PageRequest, columns: Sequence[str], folds: tuple[Fold, ...]
    ) -> Page:
        rows, more = await email_repo.list_email_rows(
            connection=self._c, tenant_id=self._t, query=query, page=page, columns=columns
        )
        return Page([r._mapping for r in rows], more, {})

    async def email_count(self, query: EmailQuery) -> int:
        return await email_repo.count_email_rows(connection=self._c, tenant_id=self._t, query=query)

    async def item_page(
        self, kind: str, query: ItemQuery, page: PageRequest, columns: Sequence[str], folds: tuple[Fold, ...]
    ) -> Page:
        rows, more = await item_repo.list_item_rows(
            connection=self._c, kind=kind, tenant_id=self._t, query=query, page=page, columns=columns
        )
        return Page([r._mapping for r in rows], more, {})

    async def item_count(self, kind: str, query: ItemQuery) -> int:
        return await item_repo.count_item_rows(connection=self._c, kind=kind, tenant_id=self._t, query=query)

    async def items_by_ids(self, kind: str, ids: Sequence[int], columns: Sequence[str]) -> list[Any]:
        rows = await item_repo.list_item_rows_by_ids(
            connection=self._c, kind=kind, tenant_id=self._t, ids=ids, columns=columns
        )
        return [r._mapping for r in rows]

    async def emails_by_ids(self, ids: Sequence[int], columns: Sequence[str]) -> list[Any]:
        rows = await email_repo.list_email_rows_by_ids(connection=self._c, tenant_id=self._t, ids=ids, columns=columns)
        return [r._mapping for r in rows]

    async def documents_by_email_ids(self, email_ids: Sequence[int], columns: Sequence[str]) -> list[Any]:
        rows = await item_repo.list_document_rows_by_email_ids(
            connection=self._c, tenant_id=self._t, email_ids=email_ids, columns=columns
        )
        return [r._mapping for r in rows]


class RepositoryRows:
    """Rows through SQLAlchemy Core, in autocommit: no BEGIN/COMMIT for reads."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @contextlib.asynccontextmanager
    async def open(self, tenant_id: int) -> AsyncIterator[Rows]:
        async with self._engine.connect() as plain:
            connection = await plain.execution_options(isolation_level="AUTOCOMMIT")
            yield _RepositoryRows(connection, tenant_id)
