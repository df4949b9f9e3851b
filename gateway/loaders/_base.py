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
