"""Reading e-mails, their history and their counts, always within one tenant."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from gateway import models
from gateway.enums import EmailStatus
from gateway.repositories.pages import Page, PageRequest, seek

__all__ = [
    "EmailQuery",
    "EmailParent",
    "count_email_rows",
    "count_emails",
    "count_emails_by_parent",
    "count_emails_by_status",
    "get_email_by_tracking_id",
    "list_email_rows",
    "list_email_rows_by_ids",
    "list_emails",
    "list_emails_by_ids",
    "list_emails_by_parent",
    "list_event_facts",
    "list_events_by_email_ids",
    "newest_first",
]

EmailParent = Literal["document", "invoice", "relation"]
E = models.Email


@dataclass(frozen=True, slots=True)
class EmailQuery:
    """The E-mails screen's filter; every part is optional and they combine with AND."""

    statuses: tuple[EmailStatus, ...] | None = None
    relation_id: int | None = None
    sent_after: datetime | None = None
    sent_before: datetime | None = None
    search: str | None = None
    complained: bool | None = None


def newest_first() -> tuple[Any, ...]:
    return (E.sent_at.desc(), E.id.desc())  # type: ignore[union-attr]


def _seek(page: PageRequest) -> tuple[list[ColumnElement[bool]], list[Any]]:
    # The cursor of an e-mail is its (sent_at, id): the newest_first() columns.
    return seek((E.sent_at, E.id), page, lambda cursor: cursor)


def _conditions(tenant_id: int, query: EmailQuery) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [E.tenant_id == tenant_id]  # type: ignore[list-item]
    if query.statuses is not None:
        conditions.append(E.status.in_(query.statuses))  # type: ignore[attr-defined]
    if query.relation_id is not None:
        conditions.append(E.relation_id == query.relation_id)  # type: ignore[arg-type]
    if query.sent_after is not None:
        conditions.append(E.sent_at >= query.sent_after)  # type: ignore[arg-type]
    if query.sent_before is not None:
        conditions.append(E.sent_at < query.sent_before)  # type: ignore[arg-type]
    if query.complained is not None:
        column = E.complained_at
        conditions.append(column.is_not(None) if query.complained else column.is_(None))  # type: ignore[union-attr]
    if query.search:
        conditions.append(
            or_(
                E.subject.icontains(query.search, autoescape=True),  # type: ignore[attr-defined]
                E.recipient.icontains(query.search, autoescape=True),  # type: ignore[attr-defined]
            )
        )
    return conditions


async def list_emails(
    *, session: AsyncSession, tenant_id: int, query: EmailQuery, page: PageRequest
) -> Page[models.Email]:
    """One page of the tenant's e-mails matching `query`, newest sent first."""
    bounds, order = _seek(page)
    statement = select(E).where(*_conditions(tenant_id, query), *bounds).order_by(*order).limit(page.first + 1)
    rows = (await session.execute(statement)).scalars().all()
    return Page.from_rows(rows, page)


async def count_emails(*, session: AsyncSession, tenant_id: int, query: EmailQuery) -> int:
    """How many of the tenant's e-mails match `query` (the connection's totalCount)."""
    statement = select(func.count()).select_from(E).where(*_conditions(tenant_id, query))
    return int((await session.execute(statement)).scalar_one())


async def count_emails_by_status(*, session: AsyncSession, tenant_id: int, query: EmailQuery) -> dict[EmailStatus, int]:
    """Counts per status, every status present (zero when none): one grouped statement."""
    statement = select(E.status, func.count()).where(*_conditions(tenant_id, query)).group_by(E.status)
    counts = dict.fromkeys(EmailStatus, 0)
    for status, count in (await session.execute(statement)).all():
        counts[EmailStatus(status)] = int(count)
    return counts


async def list_emails_by_ids(*, session: AsyncSession, tenant_id: int, ids: Sequence[int]) -> list[models.Email]:
    """The tenant's e-mails among `ids` (another tenant's ids simply find nothing)."""
    statement = select(E).where(E.tenant_id == tenant_id, E.id.in_(ids))  # type: ignore[union-attr]
    return list((await session.execute(statement)).scalars().all())


def _parent_column(parent: EmailParent) -> Any:
    if parent == "document":
        return models.EmailDocument.document_id
    if parent == "invoice":
        return E.invoice_id
    return E.relation_id


def _from_parent(parent: EmailParent, statement: Any) -> Any:
    if parent == "document":
        return statement.select_from(E).join(models.EmailDocument, models.EmailDocument.email_id == E.id)  # type: ignore[arg-type]
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
    bounds, order = _seek(page)
    number = func.row_number().over(partition_by=column, order_by=order)
    ranked = (
        _from_parent(parent, select(column.label("parent_id"), E.id.label("email_id"), number.label("rn")))  # type: ignore[union-attr]
        .where(column.in_(parent_ids), E.tenant_id == tenant_id, *bounds)
        .subquery()
    )
    statement = (
        select(ranked.c.parent_id, E)
        .join(E, E.id == ranked.c.email_id)  # type: ignore[arg-type]
        .where(ranked.c.rn <= page.first + 1)
        .order_by(ranked.c.parent_id, ranked.c.rn)
    )
    rows: dict[int, list[models.Email]] = defaultdict(list)
    for parent_id, email in (await session.execute(statement)).all():
        rows[parent_id].append(email)
    return {pid: Page.from_rows(rows.get(pid, []), page) for pid in parent_ids}


async def count_emails_by_parent(
    *, session: AsyncSession, tenant_id: int, parent: EmailParent, parent_ids: Sequence[int]
) -> dict[int, int]:
    """How many e-mails each parent has, in one grouped statement."""
    column = _parent_column(parent)
    statement = (
        _from_parent(parent, select(column, func.count()))
        .where(column.in_(parent_ids), E.tenant_id == tenant_id)
        .group_by(column)
    )
    counts = dict.fromkeys(parent_ids, 0)
    for parent_id, count in (await session.execute(statement)).all():
        counts[parent_id] = int(count)
    return counts


async def list_events_by_email_ids(
    *, session: AsyncSession, tenant_id: int, email_ids: Sequence[int]
) -> list[models.EmailEvent]:
    """The recorded history of these e-mails, oldest first within each e-mail."""
    ev = models.EmailEvent
    statement = (
        select(ev)
        .where(ev.tenant_id == tenant_id, ev.email_id.in_(email_ids))  # type: ignore[attr-defined]
        .order_by(ev.email_id, ev.occurred_at, ev.id)
    )
    return list((await session.execute(statement)).scalars().all())


async def list_event_facts(*, session: AsyncSession, email_ids: Sequence[int]) -> Sequence[Any]:
    """What the status projection needs of these e-mails' events, as plain rows.

    For the ingestion path, whose e-mails are already found and locked: only the
    columns the projection reads, without building ORM objects.
    """
    ev = models.EmailEvent
    statement = select(
        ev.email_id,
        ev.source,
        ev.event_key,
        ev.status,
        ev.occurred_at,
        ev.failure_category,
        ev.reason,
        ev.smtp_code,
        ev.machine_open,
    ).where(ev.email_id.in_(email_ids))  # type: ignore[attr-defined]
    return (await session.execute(statement)).all()


async def get_email_by_tracking_id(*, session: AsyncSession, tracking_id: str) -> models.Email | None:
    """The e-mail a tracking-image token points at (any tenant: the token is the proof)."""
    statement = select(E).where(E.tracking_id == tracking_id)
    return (await session.execute(statement)).scalar_one_or_none()


# -- plain rows for the compiled fast path (gateway.fastpath) -------------------------------------


async def list_email_rows(
    *, connection: AsyncConnection, tenant_id: int, query: EmailQuery, page: PageRequest, columns: Sequence[str]
) -> tuple[list[Any], bool]:
    """A page of the E-mails screen as plain rows of `columns` (id and sent_at first).

    The same filter and order as `list_emails`, without ORM objects: the second
    value says whether another page follows.
    """
    wanted = [E.id, E.sent_at, *(getattr(E, c) for c in columns if c not in ("id", "sent_at"))]
    bounds, order = _seek(page)
    statement = select(*wanted).where(*_conditions(tenant_id, query), *bounds).order_by(*order).limit(page.first + 1)
    return page.cut((await connection.execute(statement)).all())


async def count_email_rows(*, connection: AsyncConnection, tenant_id: int, query: EmailQuery) -> int:
    """`count_emails` on a plain connection."""
    statement = select(func.count()).select_from(E).where(*_conditions(tenant_id, query))
    return int((await connection.execute(statement)).scalar_one())


async def list_email_rows_by_ids(
    *, connection: AsyncConnection, tenant_id: int, ids: Sequence[int], columns: Sequence[str]
) -> list[Any]:
    """E-mails by id as plain rows of `columns` (id first), within the tenant."""
    statement = select(E.id, *(getattr(E, c) for c in columns if c != "id")).where(
        E.tenant_id == tenant_id,
        E.id.in_(ids),  # type: ignore[union-attr]
    )
    return list((await connection.execute(statement)).all())
