"""Reading e-mails, their history and their counts, always within one tenant."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Literal, TypeVarTuple

from sqlalchemy import ColumnElement, Select, String, UnaryExpression, bindparam, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, Mapped
from sqlmodel import col

from gateway import models
from gateway.enums import EmailStatus
from gateway.repositories.pages import (
    Page,
    PageRequest,
    PageShape,
    dialect_of,
    escape_like,
    one_of,
    seek,
    seek_params,
)

__all__ = [
    "EmailParent",
    "EmailQuery",
    "EmailShape",
    "count_emails",
    "count_emails_by_parent",
    "count_emails_by_status",
    "email_count_by_status_statement",
    "email_count_statement",
    "email_page_statement",
    "email_params",
    "email_shape",
    "emails_by_ids_statement",
    "get_email_by_tracking_id",
    "list_emails",
    "list_emails_by_ids",
    "list_emails_by_parent",
    "list_event_facts",
    "list_events_by_email_ids",
    "newest_first",
]

EmailParent = Literal["document", "invoice", "relation"]
E = models.Email
_SENT_AT_TYPE = models.table_of(E).c.sent_at.type  # UTCDateTime: the bounds bind as the column does


@dataclass(frozen=True, slots=True)
class EmailQuery:
    """The E-mails screen's filter; every part is optional and they combine with AND."""

    statuses: tuple[EmailStatus, ...] | None = None
    relation_id: int | None = None
    sent_after: datetime | None = None
    sent_before: datetime | None = None
    search: str | None = None
    complained: bool | None = None


def _cursor_columns() -> tuple[Mapped[datetime], Mapped[int | None]]:
    """What an e-mail's cursor holds and the screens order by: (sent_at, id)."""
    return (col(E.sent_at), col(E.id))


def _cursor_params(page: PageRequest) -> dict[str, Any]:
    return seek_params(page, lambda cursor: cursor)  # an e-mail's cursor is (sent_at, id) itself


def newest_first() -> tuple[UnaryExpression[datetime], UnaryExpression[int | None]]:
    sent_at, email_id = _cursor_columns()
    return (sent_at.desc(), email_id.desc())


# Which parts of an EmailQuery are given (and `complained` itself): a statement's
# text depends on this, never on the values, which are parameters.
EmailShape = tuple[bool, bool, bool, bool, bool, bool | None]


def email_shape(query: EmailQuery) -> EmailShape:
    return (
        query.statuses is not None,
        query.relation_id is not None,
        query.sent_after is not None,
        query.sent_before is not None,
        bool(query.search),
        query.complained,
    )


def email_params(tenant_id: int, query: EmailQuery, page: PageRequest | None = None) -> dict[str, Any]:
    """The parameters of `email_page_statement` / `email_count_statement` for one request."""
    params: dict[str, Any] = {"tenant_id": tenant_id}
    if query.statuses is not None:
        params["statuses"] = [s.name for s in query.statuses]
    if query.relation_id is not None:
        params["relation_id"] = query.relation_id
    if query.sent_after is not None:
        params["sent_after"] = query.sent_after
    if query.sent_before is not None:
        params["sent_before"] = query.sent_before
    if query.search:
        params["search"] = escape_like(query.search)
    if page is not None:
        params.update(_cursor_params(page))
        params["limit"] = page.first + 1
    return params


def _conditions(shape: EmailShape, dialect: str) -> list[ColumnElement[bool]]:
    statuses, relation, sent_after, sent_before, search, complained = shape
    conditions: list[ColumnElement[bool]] = [col(E.tenant_id) == bindparam("tenant_id")]
    if statuses:
        conditions.append(one_of(col(E.status), "statuses", dialect))
    if relation:
        conditions.append(col(E.relation_id) == bindparam("relation_id"))
    sent_at = col(E.sent_at)
    if sent_after:
        conditions.append(sent_at >= bindparam("sent_after", type_=_SENT_AT_TYPE))
    if sent_before:
        conditions.append(sent_at < bindparam("sent_before", type_=_SENT_AT_TYPE))
    if complained is not None:
        column = col(E.complained_at)
        conditions.append(column.is_not(None) if complained else column.is_(None))
    if search:
        pattern = bindparam("search", type_=String())
        conditions.append(
            or_(
                col(E.subject).icontains(pattern, escape="/"),
                col(E.recipient).icontains(pattern, escape="/"),
            )
        )
    return conditions


@lru_cache(maxsize=512)
def email_page_statement(
    shape: EmailShape, page: PageShape, columns: tuple[str, ...] | None, dialect: str
) -> Select[Any]:
    """One page of the E-mails screen, newest sent first: whole e-mails (`columns` None) or
    those columns, `id` and `sent_at` first. Built once per shape; `email_params` gives the values."""
    wanted: list[Any] = [E] if columns is None else [col(E.id), col(E.sent_at), *_columns(columns, "id", "sent_at")]
    bounds, order = seek(_cursor_columns(), page)
    return select(*wanted).where(*_conditions(shape, dialect), *bounds).order_by(*order).limit(bindparam("limit"))


@lru_cache(maxsize=256)
def email_count_statement(shape: EmailShape, dialect: str) -> Select[Any]:
    """How many e-mails match (the connection's totalCount)."""
    return select(func.count().label("count")).select_from(E).where(*_conditions(shape, dialect))


@lru_cache(maxsize=256)
def email_count_by_status_statement(shape: EmailShape, dialect: str) -> Select[EmailStatus, int]:
    """How many e-mails match, per status (the statistics' byStatus)."""
    status = col(E.status)
    return select(status, func.count()).where(*_conditions(shape, dialect)).group_by(status)


@lru_cache(maxsize=256)
def emails_by_ids_statement(columns: tuple[str, ...] | None, dialect: str) -> Select[Any]:
    """E-mails among the list parameter `ids` within the tenant: whole, or `columns` (id first)."""
    wanted: list[Any] = [E] if columns is None else [col(E.id), *_columns(columns, "id")]
    return select(*wanted).where(col(E.tenant_id) == bindparam("tenant_id"), one_of(col(E.id), "ids", dialect))


def _columns(columns: Sequence[str], *skip: str) -> list[InstrumentedAttribute[Any]]:
    # Columns named at run time (the fast path's selections): looked up, so typed by their class.
    return [getattr(E, c) for c in columns if c not in skip]


async def list_emails(
    *, session: AsyncSession, tenant_id: int, query: EmailQuery, page: PageRequest
) -> Page[models.Email]:
    """One page of the tenant's e-mails matching `query`, newest sent first."""
    statement = email_page_statement(email_shape(query), page.shape, None, dialect_of(session))
    rows = (await session.execute(statement, email_params(tenant_id, query, page))).scalars().all()
    return Page.from_rows(rows, page)


async def count_emails(*, session: AsyncSession, tenant_id: int, query: EmailQuery) -> int:
    """How many of the tenant's e-mails match `query` (the connection's totalCount)."""
    statement = email_count_statement(email_shape(query), dialect_of(session))
    return int((await session.execute(statement, email_params(tenant_id, query))).scalar_one())


async def count_emails_by_status(*, session: AsyncSession, tenant_id: int, query: EmailQuery) -> dict[EmailStatus, int]:
    """Counts per status, every status present (zero when none): one grouped statement."""
    statement = email_count_by_status_statement(email_shape(query), dialect_of(session))
    counts = dict.fromkeys(EmailStatus, 0)
    for status, count in (await session.execute(statement, email_params(tenant_id, query))).all():
        counts[EmailStatus(status)] = int(count)
    return counts


async def list_emails_by_ids(*, session: AsyncSession, tenant_id: int, ids: Sequence[int]) -> list[models.Email]:
    """The tenant's e-mails among `ids` (another tenant's ids simply find nothing)."""
    statement = emails_by_ids_statement(None, dialect_of(session))
    return list((await session.execute(statement, {"tenant_id": tenant_id, "ids": list(ids)})).scalars().all())


def _parent_column(parent: EmailParent) -> Mapped[int | None]:
    if parent == "document":
        return col(models.EmailDocument.document_id)
    if parent == "invoice":
        return col(E.invoice_id)
    return col(E.relation_id)


_Row = TypeVarTuple("_Row")


def _from_parent(parent: EmailParent, statement: Select[*_Row]) -> Select[*_Row]:
    if parent == "document":
        link = models.EmailDocument
        return statement.select_from(E).join(link, col(link.email_id) == col(E.id))
    return statement


async def list_emails_by_parent(
    *,
    session: AsyncSession,
    tenant_id: int,
    parent: EmailParent,
    parent_ids: Sequence[int],
    page: PageRequest,
) -> dict[int, Page[models.Email]]:
    """A page of e-mails for each parent (document, invoice or relation), in one statement.

    A window function numbers each parent's e-mails newest first, so a screen of
    100 documents with their e-mails costs one query, not 100.
    """
    column = _parent_column(parent)
    email_id = col(E.id)
    bounds, order = seek(_cursor_columns(), page.shape)
    number = func.row_number().over(partition_by=column, order_by=order)
    ranked = (
        _from_parent(parent, select(column.label("parent_id"), email_id.label("email_id"), number.label("rn")))
        .where(column.in_(parent_ids), col(E.tenant_id) == tenant_id, *bounds)
        .subquery()
    )
    statement = (
        select(ranked.c.parent_id, E)
        .join(E, email_id == ranked.c.email_id)
        .where(ranked.c.rn <= page.first + 1)
        .order_by(ranked.c.parent_id, ranked.c.rn)
    )
    rows: dict[int, list[models.Email]] = defaultdict(list)
    params = _cursor_params(page)
    for parent_id, email in (await session.execute(statement, params)).all():
        rows[parent_id].append(email)
    return {pid: Page.from_rows(rows.get(pid, []), page) for pid in parent_ids}


async def count_emails_by_parent(
    *, session: AsyncSession, tenant_id: int, parent: EmailParent, parent_ids: Sequence[int]
) -> dict[int, int]:
    """How many e-mails each parent has, in one grouped statement."""
    column = _parent_column(parent)
    statement = (
        _from_parent(parent, select(column, func.count()))
        .where(column.in_(parent_ids), col(E.tenant_id) == tenant_id)
        .group_by(column)
    )
    counts = dict.fromkeys(parent_ids, 0)
    for parent_id, count in (await session.execute(statement)).all():
        if parent_id is not None:  # never: the WHERE keeps only the parents asked for
            counts[parent_id] = int(count)
    return counts


async def list_events_by_email_ids(
    *, session: AsyncSession, tenant_id: int, email_ids: Sequence[int]
) -> list[models.EmailEvent]:
    """The recorded history of these e-mails, oldest first within each e-mail."""
    ev = models.EmailEvent
    statement = (
        select(ev)
        .where(col(ev.tenant_id) == tenant_id, col(ev.email_id).in_(email_ids))
        .order_by(col(ev.email_id), col(ev.occurred_at), col(ev.id))
    )
    return list((await session.execute(statement)).scalars().all())


async def list_event_facts(*, session: AsyncSession, email_ids: Sequence[int]) -> Sequence[Any]:
    """What the status projection needs of these e-mails' events, as plain rows.

    For the ingestion path, whose e-mails are already found and locked: only the
    columns the projection reads, without building ORM objects.
    """
    ev = models.EmailEvent
    statement = select(
        col(ev.email_id),
        col(ev.source),
        col(ev.event_key),
        col(ev.status),
        col(ev.occurred_at),
        col(ev.failure_category),
        col(ev.reason),
        col(ev.smtp_code),
        col(ev.machine_open),
    ).where(col(ev.email_id).in_(email_ids))
    return (await session.execute(statement)).all()


async def get_email_by_tracking_id(*, session: AsyncSession, tracking_id: str) -> models.Email | None:
    """The e-mail a tracking-image token points at (any tenant: the token is the proof)."""
    statement = select(E).where(col(E.tracking_id) == tracking_id)
    return (await session.execute(statement)).scalar_one_or_none()
