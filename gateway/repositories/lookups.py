"""A screen's page with its rows' lookups carried in the same statement (PostgreSQL).

A page of e-mails shows each row's relation, invoice and documents; a page of
documents or invoices shows each row's relation and newest e-mail. Each lookup
(`Fold`) becomes a subquery of the page statement, found by a column of the
page, so a screen is one statement and one round trip, as PostGraphile sends
it. The page is cut by its LIMIT first: the subqueries run for its rows only.
The lookups read the same tables, by the same tenant, as `items_by_ids_statement`,
`emails_by_ids_statement` and `documents_by_email_ids_statement`, which the other
databases run as separate statements instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from sqlalchemy import BindParameter, Select, bindparam, func, select
from sqlalchemy.orm import aliased

from gateway import models

__all__ = ["Fold", "Lookup", "with_lookups"]

# What a lookup finds: by id ("relations", "invoices", "latest_emails"), or the
# documents each e-mail carried ("documents_by_email").
Lookup = Literal["relations", "invoices", "latest_emails", "documents_by_email"]

_TABLES: dict[str, Any] = {"relations": models.Relation, "invoices": models.Invoice, "latest_emails": models.Email}


@dataclass(frozen=True)
class Fold:
    """A lookup that a page carries: which one, the page column it is found by, and its columns."""

    lookup: Lookup
    key: str
    columns: tuple[str, ...]


def _fold(fold: Fold, page: Any) -> Any:
    tenant: BindParameter[int] = bindparam("tenant_id")
    if fold.lookup == "documents_by_email":
        # In the order of documents_by_email_ids_statement: by document id.
        found, link = aliased(models.Document, name="f"), models.EmailDocument
        records = (
            select(func.row(*(getattr(found, c) for c in fold.columns)))
            .join(link, link.document_id == found.id)  # type: ignore[arg-type]
            .where(link.tenant_id == tenant, link.email_id == page.c[fold.key])  # type: ignore[arg-type]
            .order_by(found.id)  # type: ignore[arg-type]  # an aliased column, typed as its value
        )
        return func.array(records.scalar_subquery())
    found = aliased(_TABLES[fold.lookup], name="f")
    record = select(func.row(*(getattr(found, c) for c in fold.columns))).where(
        found.tenant_id == tenant, found.id == page.c[fold.key]
    )
    return record.scalar_subquery()


@lru_cache(maxsize=512)
def with_lookups(statement: Select[Any], folds: tuple[Fold, ...], order: tuple[str, ...]) -> Select[Any]:
    """The page `statement` with column `_fold<n>` holding fold n's record(s) for each row,
    ordered newest first by the page's `order` columns (as the page itself is)."""
    if not folds:
        return statement
    page = statement.subquery("p")
    carried = [_fold(fold, page).label(f"_fold{n}") for n, fold in enumerate(folds)]
    return select(page, *carried).order_by(*(page.c[name].desc() for name in order))
