"""Loaders for e-mails, their history and the e-mails of a document, invoice or relation."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy.ext.asyncio import AsyncSession

from gateway import models
from gateway.db import RequestDb
from gateway.repositories import emails as repo
from gateway.repositories.pages import Page, PageRequest

from ._base import TenantLoader, by_key

__all__ = [
    "EmailByIdLoader",
    "EmailCountByParentIdLoader",
    "EmailsByParentIdLoader",
    "EventsByEmailIdLoader",
]


class EmailByIdLoader(TenantLoader[int, "models.Email | None"]):
    """E-mails by primary key, in key order, None for missing or foreign ids."""

    async def load_batch(self, session: AsyncSession, keys: list[int]) -> list[models.Email | None]:
        rows = await repo.list_emails_by_ids(session=session, tenant_id=self.tenant_id, ids=keys)
        return by_key(keys, rows)


class EventsByEmailIdLoader(TenantLoader[int, list[models.EmailEvent]]):
    """The recorded history of each e-mail, oldest first."""

    async def load_batch(self, session: AsyncSession, keys: list[int]) -> list[list[models.EmailEvent]]:
        history: dict[int, list[models.EmailEvent]] = defaultdict(list)
        for event in await repo.list_events_by_email_ids(session=session, tenant_id=self.tenant_id, email_ids=keys):
            history[event.email_id].append(event)
        return [history.get(k, []) for k in keys]


class EmailsByParentIdLoader(TenantLoader[tuple[int, PageRequest], Page[models.Email]]):
    """A page of e-mails per parent; keys sharing a page request go out as one statement."""

    def __init__(self, *, parent: repo.EmailParent, db: RequestDb, tenant_id: int) -> None:
        super().__init__(db=db, tenant_id=tenant_id)
        self.parent: repo.EmailParent = parent

    async def load_batch(self, session: AsyncSession, keys: list[tuple[int, PageRequest]]) -> list[Page[models.Email]]:
        by_request: dict[PageRequest, list[int]] = defaultdict(list)
        for parent_id, page in keys:
            by_request[page].append(parent_id)
        pages: dict[tuple[int, PageRequest], Page[models.Email]] = {}
        for page, parent_ids in by_request.items():
            found = await repo.list_emails_by_parent(
                session=session,
                tenant_id=self.tenant_id,
                parent=self.parent,
                parent_ids=parent_ids,
                page=page,
            )
            for parent_id, result in found.items():
                pages[(parent_id, page)] = result
        return [pages[k] for k in keys]


class EmailCountByParentIdLoader(TenantLoader[int, int]):
    """How many e-mails each parent has (a nested connection's totalCount)."""

    def __init__(self, *, parent: repo.EmailParent, db: RequestDb, tenant_id: int) -> None:
        super().__init__(db=db, tenant_id=tenant_id)
        self.parent: repo.EmailParent = parent

    async def load_batch(self, session: AsyncSession, keys: list[int]) -> list[int]:
        counts = await repo.count_emails_by_parent(
            session=session, tenant_id=self.tenant_id, parent=self.parent, parent_ids=keys
        )
        return [counts[k] for k in keys]
