"""API-key authentication, with a short cache so that a request costs no key lookup."""

from __future__ import annotations

import time
from collections import OrderedDict

from gateway.db import SessionFactory
from gateway.repositories.api_keys import Principal, get_principal, hash_key

__all__ = ["Authenticator", "bearer"]


def bearer(value: object) -> str | None:
    """The key of an `Authorization: Bearer <key>` value, or None."""
    if not isinstance(value, str) or not value:
        return None
    scheme, _, key = value.partition(" ")
    return key.strip() if scheme.lower() == "bearer" and key.strip() else None


class Authenticator:
    """Principals by key, remembered for `ttl` seconds (a revoked key works at most that long).

    Only keys that were found are remembered, and only their hashes are kept.
    """

    def __init__(self, session_factory: SessionFactory, *, ttl: float, size: int = 10_000) -> None:
        self._sessions = session_factory
        self._ttl = ttl
        self._size = size
        self._known: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    async def __call__(self, authorization: object) -> Principal | None:
        key = bearer(authorization)
        if key is None:
            return None
        digest = hash_key(key)
        hit = self._known.get(digest)
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        async with self._sessions() as session:
            principal = await get_principal(session=session, raw_key=key)
        if principal is not None and self._ttl > 0:
            self._known[digest] = (principal, time.monotonic() + self._ttl)
            self._known.move_to_end(digest)
            while len(self._known) > self._size:
                self._known.popitem(last=False)
        return principal
