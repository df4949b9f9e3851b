"""Relations, documents and invoices: the items that e-mails carry, within one tenant."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, TypeVar

from sqlalchemy import ColumnElement, Select, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from gateway import models
from gateway.enums import EmailStatus, InvoiceStatus
from gateway.repositories.pages import Page, PageRequest, PageShape, dialect_of, one_of, seek, seek_params

__all__ = [
    "ItemKind",
    "ItemQuery",
    "ItemShape",
    "count_documents",
    "count_invoices",
    "documents_by_email_ids_statement",
    "item_count_statement",
    "item_page_statement",
    "item_params",
    "item_shape",
    "items_by_ids_statement",
    "list_documents",
    "list_documents_by_email_ids",
    "list_documents_by_ids",
    "list_invoices",
    "list_invoices_by_ids",
    "list_relations_by_ids",
]

Item = TypeVar("Item", models.Relation, models.Document, models.Invoice)

# The tables of items, by kind (the table's name).
ItemKind = Literal["relation", "document", "invoice"]
# Typed Any: the statements below read columns that only some kinds have (invoice_status).
_MODELS: dict[ItemKind, Any] = {"relation": models.Relation, "document": models.Document, "invoice": models.Invoice}
_KINDS: dict[type[models.Relation | models.Document | models.Invoice], ItemKind] = {
    model: kind for kind, model in _MODELS.items()
}


@dataclass(frozen=True, slots=True)
class ItemQuery:
    """The Documents and Invoicing screens' filter (AND of the parts given)."""

    email_statuses: tuple[EmailStatus, ...] | None = None
    invoice_statuses: tuple[InvoiceStatus, ...] | None = None
    relation_id: int | None = None


# Which parts of an ItemQuery are given: a statement's text depends on this only.
ItemShape = tuple[bool, bool, bool]


def item_shape(query: ItemQuery) -> ItemShape:
    return (query.email_statuses is not None, query.invoice_statuses is not None, query.relation_id is not None)


def item_params(tenant_id: int, query: ItemQuery, page: PageRequest | None = None) -> dict[str, Any]:
    """The parameters of `item_page_statement` / `item_count_statement` for one request."""
    params: dict[str, Any] = {"tenant_id": tenant_id}
    if query.email_statuses is not None:
        params["email_statuses"] = [s.name for s in query.email_statuses]
    if query.invoice_statuses is not None:
        params["invoice_statuses"] = [s.name for s in query.invoice_statuses]
    if query.relation_id is not None:
        params["relation_id"] = query.relation_id
    if page is not None:
        params.update(seek_params(page, lambda cursor: cursor[1:]))  # items page by id alone: (None, id)
        params["limit"] = page.first + 1
    return params


def _conditions(model: Any, shape: ItemShape, dialect: str) -> list[ColumnElement[bool]]:
    email_statuses, invoice_statuses, relation = shape
    conditions: list[ColumnElement[bool]] = [model.tenant_id == bindparam("tenant_id")]
    if relation:
        conditions.append(model.relation_id == bindparam("relation_id"))
    if invoice_statuses:
        conditions.append(one_of(model.invoice_status, "invoice_statuses", dialect))
    if email_statuses:
        # The status of an item is the status of the newest e-mail that carried it.
        email = models.Email
        latest = select(col(email.status)).where(col(email.id) == model.latest_email_id).scalar_subquery()
        conditions.append(one_of(latest, "email_statuses", dialect))
    return conditions


def _wanted(model: Any, columns: tuple[str, ...] | None) -> list[Any]:
    return [model] if columns is None else [model.id, *(getattr(model, c) for c in columns if c != "id")]


@lru_cache(maxsize=256)
def item_page_statement(
    kind: ItemKind, shape: ItemShape, page: PageShape, columns: tuple[str, ...] | None, dialect: str
) -> Select[Any]:
    """One page of the Documents or Invoicing screen, newest first (by id): whole items
    (`columns` None) or those columns, `id` first. `item_params` gives the values."""
    model = _MODELS[kind]
    bounds, order = seek((model.id,), page)
    return (
        select(*_wanted(model, columns))
        .where(*_conditions(model, shape, dialect), *bounds)
        .order_by(*order)
        .limit(bindparam("limit"))
    )


@lru_cache(maxsize=256)
def item_count_statement(kind: ItemKind, shape: ItemShape, dialect: str) -> Select[Any]:
    """How many items match (the connection's totalCount)."""
    model = _MODELS[kind]
    return select(func.count().label("count")).select_from(model).where(*_conditions(model, shape, dialect))


@lru_cache(maxsize=256)
def items_by_ids_statement(kind: ItemKind, columns: tuple[str, ...] | None, dialect: str) -> Select[Any]:
    """Relations, documents or invoices among the list parameter `ids` within the tenant."""
    model = _MODELS[kind]
    return select(*_wanted(model, columns)).where(
        model.tenant_id == bindparam("tenant_id"), one_of(model.id, "ids", dialect)
    )


@lru_cache(maxsize=256)
def documents_by_email_ids_statement(columns: tuple[str, ...] | None, dialect: str) -> Select[Any]:
    """`(email id, document)` rows for the documents the e-mails among `email_ids` carried,
    by e-mail then document id: whole documents or those columns (`id` first)."""
    link, doc = models.EmailDocument, models.Document
    email_id = col(link.email_id)
    return (
        select(email_id, *_wanted(doc, columns))
        .join(doc, col(doc.id) == col(link.document_id))
        .where(col(link.tenant_id) == bindparam("tenant_id"), one_of(email_id, "email_ids", dialect))
        .order_by(email_id, col(doc.id))
    )


async def _list(
    model: type[Item], *, session: AsyncSession, tenant_id: int, query: ItemQuery, page: PageRequest
) -> Page[Item]:
    statement = item_page_statement(_kind(model), item_shape(query), page.shape, None, dialect_of(session))
    rows = (await session.execute(statement, item_params(tenant_id, query, page))).scalars().all()
    return Page.from_rows(rows, page)


def _kind(model: type[Item]) -> ItemKind:
    return _KINDS[model]


async def _count(model: type[Item], *, session: AsyncSession, tenant_id: int, query: ItemQuery) -> int:
    statement = item_count_statement(_kind(model), item_shape(query), dialect_of(session))
    return int((await session.execute(statement, item_params(tenant_id, query))).scalar_one())


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


async def _by_ids(model: type[Item], session: AsyncSession, tenant_id: int, ids: Sequence[int]) -> list[Item]:
    statement = items_by_ids_statement(_kind(model), None, dialect_of(session))
    return list((await session.execute(statement, {"tenant_id": tenant_id, "ids": list(ids)})).scalars().all())


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
    statement = documents_by_email_ids_statement(None, dialect_of(session))
    params = {"tenant_id": tenant_id, "email_ids": list(email_ids)}
    return [(email_id, doc) for email_id, doc in (await session.execute(statement, params)).all()]
