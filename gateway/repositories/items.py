"""Relations, documents and invoices: the items that e-mails carry, within one tenant."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from gateway import models
from gateway.enums import EmailStatus, InvoiceStatus
from gateway.repositories.pages import Page, PageRequest, seek

__all__ = [
    "ItemQuery",
    "count_documents",
    "count_invoices",
    "count_item_rows",
    "list_document_rows_by_email_ids",
    "list_item_rows",
    "list_item_rows_by_ids",
    "list_documents",
    "list_documents_by_email_ids",
    "list_documents_by_ids",
    "list_invoices",
    "list_invoices_by_ids",
    "list_relations_by_ids",
]

Item = TypeVar("Item", models.Document, models.Invoice)


@dataclass(frozen=True, slots=True)
class ItemQuery:
    """The Documents and Invoicing screens' filter (AND of the parts given)."""

    email_statuses: tuple[EmailStatus, ...] | None = None
    invoice_statuses: tuple[InvoiceStatus, ...] | None = None
    relation_id: int | None = None


def _conditions(model: Any, tenant_id: int, query: ItemQuery) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [model.tenant_id == tenant_id]
    if query.relation_id is not None:
        conditions.append(model.relation_id == query.relation_id)
    if query.invoice_statuses is not None:
        conditions.append(model.invoice_status.in_(query.invoice_statuses))
    if query.email_statuses is not None:
        # The status of an item is the status of the newest e-mail that carried it.
        latest = select(models.Email.status).where(models.Email.id == model.latest_email_id)
        conditions.append(latest.scalar_subquery().in_(query.email_statuses))
    return conditions


def _seek(model: Any, page: PageRequest) -> tuple[list[ColumnElement[bool]], list[Any]]:
    # Items page by id alone: their cursors carry (None, id).
    return seek((model.id,), page, lambda cursor: cursor[1:])


async def _list(
    model: type[Item], *, session: AsyncSession, tenant_id: int, query: ItemQuery, page: PageRequest
) -> Page[Item]:
    bounds, order = _seek(model, page)
    statement = (
        select(model).where(*_conditions(model, tenant_id, query), *bounds).order_by(*order).limit(page.first + 1)
    )
    rows = (await session.execute(statement)).scalars().all()
    return Page.from_rows(rows, page)


async def _count(model: Any, *, session: AsyncSession, tenant_id: int, query: ItemQuery) -> int:
    statement = select(func.count()).select_from(model).where(*_conditions(model, tenant_id, query))
    return int((await session.execute(statement)).scalar_one())


async def list_documents(
    *, session: AsyncSession, tenant_id: int, query: ItemQuery, page: PageRequest
) -> Page[models.Document]:
    """One page of the Documents screen, newest document first."""
    return await _list(models.Document, session=session, tenant_id=tenant_id, query=query, page=page)


async def count_documents(*, session: AsyncSession, tenant_id: int, query: ItemQuery) -> int:
    """How many documents match (the Documents connection's totalCount)."""
    return await _count(models.Document, session=session, tenant_id=tenant_id, query=query)


async def list_invoices(
    *, session: AsyncSession, tenant_id: int, query: ItemQuery, page: PageRequest
) -> Page[models.Invoice]:
    """One page of the Invoicing screen, newest invoice first."""
    return await _list(models.Invoice, session=session, tenant_id=tenant_id, query=query, page=page)


async def count_invoices(*, session: AsyncSession, tenant_id: int, query: ItemQuery) -> int:
    """How many invoices match (the Invoicing connection's totalCount)."""
    return await _count(models.Invoice, session=session, tenant_id=tenant_id, query=query)


async def _by_ids(model: Any, session: AsyncSession, tenant_id: int, ids: Sequence[int]) -> list[Any]:
    statement = select(model).where(model.tenant_id == tenant_id, model.id.in_(ids))
    return list((await session.execute(statement)).scalars().all())


async def list_relations_by_ids(*, session: AsyncSession, tenant_id: int, ids: Sequence[int]) -> list[models.Relation]:
    """The tenant's relations among `ids`; foreign or missing ids find nothing."""
    return await _by_ids(models.Relation, session, tenant_id, ids)


async def list_documents_by_ids(*, session: AsyncSession, tenant_id: int, ids: Sequence[int]) -> list[models.Document]:
    """The tenant's documents among `ids`; foreign or missing ids find nothing."""
    return await _by_ids(models.Document, session, tenant_id, ids)


async def list_invoices_by_ids(*, session: AsyncSession, tenant_id: int, ids: Sequence[int]) -> list[models.Invoice]:
    """The tenant's invoices among `ids`; foreign or missing ids find nothing."""
    return await _by_ids(models.Invoice, session, tenant_id, ids)


async def list_documents_by_email_ids(
    *, session: AsyncSession, tenant_id: int, email_ids: Sequence[int]
) -> list[tuple[int, models.Document]]:
    """`(email id, document)` pairs for the documents these e-mails carried."""
    link = models.EmailDocument
    statement = (
        select(link.email_id, models.Document)
        .join(models.Document, models.Document.id == link.document_id)  # type: ignore[arg-type]
        .where(link.tenant_id == tenant_id, link.email_id.in_(email_ids))  # type: ignore[attr-defined]
        .order_by(link.email_id, models.Document.id)
    )
    return [(email_id, doc) for email_id, doc in (await session.execute(statement)).all()]


# -- plain rows for the compiled fast path (gateway.fastpath) -------------------------------------

_MODELS = {"relation": models.Relation, "document": models.Document, "invoice": models.Invoice}


async def list_item_rows_by_ids(
    *, connection: AsyncConnection, kind: str, tenant_id: int, ids: Sequence[int], columns: Sequence[str]
) -> list[Any]:
    """Relations, documents or invoices by id as plain rows of `columns` (id first)."""
    model = _MODELS[kind]
    statement = select(model.id, *(getattr(model, c) for c in columns if c != "id")).where(
        model.tenant_id == tenant_id, model.id.in_(ids)
    )
    return list((await connection.execute(statement)).all())


async def list_item_rows(
    *,
    connection: AsyncConnection,
    kind: str,
    tenant_id: int,
    query: ItemQuery,
    page: PageRequest,
    columns: Sequence[str],
) -> tuple[list[Any], bool]:
    """A page of the Documents or Invoicing screen as plain rows (id first), newest first."""
    model = _MODELS[kind]
    bounds, order = _seek(model, page)
    statement = select(model.id, *(getattr(model, c) for c in columns if c != "id")).where(
        *_conditions(model, tenant_id, query), *bounds
    )
    return page.cut((await connection.execute(statement.order_by(*order).limit(page.first + 1))).all())


async def count_item_rows(*, connection: AsyncConnection, kind: str, tenant_id: int, query: ItemQuery) -> int:
    """`count_documents` / `count_invoices` on a plain connection."""
    model = _MODELS[kind]
    statement = select(func.count()).select_from(model).where(*_conditions(model, tenant_id, query))
    return int((await connection.execute(statement)).scalar_one())


async def list_document_rows_by_email_ids(
    *, connection: AsyncConnection, tenant_id: int, email_ids: Sequence[int], columns: Sequence[str]
) -> list[Any]:
    """(email id, document columns...) rows for the documents these e-mails carried."""
    link, doc = models.EmailDocument, models.Document
    statement = (
        select(link.email_id, doc.id, *(getattr(doc, c) for c in columns if c != "id"))
        .join(doc, doc.id == link.document_id)  # type: ignore[arg-type]
        .where(link.tenant_id == tenant_id, link.email_id.in_(email_ids))  # type: ignore[attr-defined]
        .order_by(link.email_id, doc.id)
    )
    return list((await connection.execute(statement)).all())
