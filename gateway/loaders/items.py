"""Loaders for relations, documents and invoices."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy.ext.asyncio import AsyncSession

from gateway import models
from gateway.repositories import items as repo

from ._base import TenantLoader, by_key

__all__ = [
    "DocumentByIdLoader",
    "DocumentsByEmailIdLoader",
    "InvoiceByIdLoader",
    "RelationByIdLoader",
]


class RelationByIdLoader(TenantLoader[int, "models.Relation | None"]):
    """Relations by primary key, None for missing or foreign ids."""

    async def load_batch(self, session: AsyncSession, keys: list[int]) -> list[models.Relation | None]:
        rows = await repo.list_relations_by_ids(session=session, tenant_id=self.tenant_id, ids=keys)
        return by_key(keys, rows)


class DocumentByIdLoader(TenantLoader[int, "models.Document | None"]):
    """Documents by primary key, None for missing or foreign ids."""

    async def load_batch(self, session: AsyncSession, keys: list[int]) -> list[models.Document | None]:
        rows = await repo.list_documents_by_ids(session=session, tenant_id=self.tenant_id, ids=keys)
        return by_key(keys, rows)


class InvoiceByIdLoader(TenantLoader[int, "models.Invoice | None"]):
    """Invoices by primary key, None for missing or foreign ids."""

    async def load_batch(self, session: AsyncSession, keys: list[int]) -> list[models.Invoice | None]:
        rows = await repo.list_invoices_by_ids(session=session, tenant_id=self.tenant_id, ids=keys)
        return by_key(keys, rows)


class DocumentsByEmailIdLoader(TenantLoader[int, list[models.Document]]):
    """The documents each e-mail carried."""

    async def load_batch(self, session: AsyncSession, keys: list[int]) -> list[list[models.Document]]:
        found: dict[int, list[models.Document]] = defaultdict(list)
        for email_id, document in await repo.list_documents_by_email_ids(
            session=session, tenant_id=self.tenant_id, email_ids=keys
        ):
            found[email_id].append(document)
        return [found.get(k, []) for k in keys]
