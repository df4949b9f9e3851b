"""The loader base: tenant-scoped, session from the request, dispatch when settled."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from aiodataloader import DataLoader, Loader
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.db import RequestDb

__all__ = ["TenantLoader", "by_key"]

K = TypeVar("K")
V = TypeVar("V")


class TenantLoader(DataLoader[K, V], Generic[K, V]):
    """A DataLoader bound to one request's database access and one tenant."""

    def __init__(self, *, db: RequestDb, tenant_id: int) -> None:
        super().__init__()
        self.db = db
        self.tenant_id = tenant_id

    def do_resolve_reject(self, key: K, future: Any) -> None:
        # aiodataloader dispatches a batch on the loop's next tick (call_soon) and offers
        # no public hook for when: the request's database access (`RequestDb.schedule`)
        # dispatches instead, once the request's resolvers have settled, so one request
        # spanning several screens makes one batch per loader. This overrides the
        # library's own hook and appends to its private `_queue`, as its `load` does;
        # pinned to aiodataloader 0.4.x (pyproject), and tests/loaders checks the
        # attribute is still there on the installed version.
        self._queue.append(Loader(key=key, future=future))
        if len(self._queue) == 1:
            self.db.schedule(self)

    async def batch_load_fn(self, keys: list[K]) -> list[V]:
        return await self.db.run(lambda session: self.load_batch(session, keys))

    async def load_batch(self, session: AsyncSession, keys: list[K]) -> list[V]:
        raise NotImplementedError


def by_key(keys: Sequence[K], rows: Sequence[Any], key: str = "id") -> list[Any]:
    """Rows in key order, None where a key found nothing."""
    found = {getattr(row, key): row for row in rows}
    return [found.get(k) for k in keys]
