"""API-key authentication, with a short cache so that a request costs no key lookup.

What the cache promises:
- a key's expiry is checked on every request, cached or not, so an expired key
  is refused from the instant it expires;
- a revoked key (or one whose expiry was moved closer, by a rotation with a
  grace period shorter than the cache) is refused at most `ttl` seconds after
  the change, in every process: a found key is remembered for `ttl` seconds
  from its lookup, then looked up again;
- a key's last use is written in the background, at most once per key per
  `LAST_USE_PRECISION` (and per `ttl`, since a cached key is not looked up):
  that write never delays or fails a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from datetime import datetime, timedelta

from gateway.db import SessionFactory
from gateway.models import utcnow
from gateway.repositories.api_keys import (
    KeyGrant,
    Principal,
    find_live_key,
    hash_key,
    record_key_uses,
)

__all__ = ["LAST_USE_PRECISION", "Authenticator", "bearer"]

log = logging.getLogger(__name__)

# How precise `last_used_at` is: one write per key per minute at the most.
LAST_USE_PRECISION = timedelta(minutes=1)


def bearer(value: object) -> str | None:
    """The key of an `Authorization: Bearer <key>` value, or None."""
    if not isinstance(value, str) or not value:
        return None
    scheme, _, key = value.partition(" ")
    return key.strip() if scheme.lower() == "bearer" and key.strip() else None


class Authenticator:
    """Principals by key, remembered for `ttl` seconds (see the module's promises).

    Only keys that were found are remembered, and only their hashes are kept.
    `aclose()` lets the last-use write still running finish; without it, a write in
    flight at shutdown is lost, which costs one last use and nothing else.
    """

    def __init__(self, session_factory: SessionFactory, *, ttl: float, size: int = 10_000) -> None:
        self._sessions = session_factory
        self._ttl = ttl
        self._size = size
        self._known: OrderedDict[str, tuple[KeyGrant, float]] = OrderedDict()
        # When this process last wrote each key's last use: concurrent lookups of
        # a key, or lookups with no cache at all, write it once per period.
        self._written: dict[int, datetime] = {}
        self._due: dict[int, datetime] = {}
        self._writer: asyncio.Task[None] | None = None

    async def __call__(self, authorization: object) -> Principal | None:
        key = bearer(authorization)
        if key is None:
            return None
        digest = hash_key(key)
        now = utcnow()
        hit = self._known.get(digest)
        if hit is not None and hit[1] > time.monotonic():
            if hit[0].valid_at(now):
                return hit[0].principal
            del self._known[digest]
            return None
        async with self._sessions() as session:
            grant = await find_live_key(session=session, raw_key=key, now=now)
        if grant is None:
            self._known.pop(digest, None)
            return None
        self._note_use(grant, now)
        if self._ttl > 0:
            self._known[digest] = (grant, time.monotonic() + self._ttl)
            self._known.move_to_end(digest)
            while len(self._known) > self._size:
                self._known.popitem(last=False)
        return grant.principal

    def _note_use(self, grant: KeyGrant, now: datetime) -> None:
        known = [t for t in (grant.last_used_at, self._written.get(grant.key_id)) if t is not None]
        if known and now - max(known) < LAST_USE_PRECISION:
            return
        self._written[grant.key_id] = now
        if len(self._written) > self._size:
            # Entries past the period no longer hold anything back: the stored value decides.
            self._written = {k: t for k, t in self._written.items() if now - t < LAST_USE_PRECISION}
        self._due[grant.key_id] = now
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_uses())

    async def _write_uses(self) -> None:
        # One writer at a time: uses noted while it writes go out together right after.
        while self._due:
            due, self._due = self._due, {}
            try:
                async with self._sessions() as session:
                    await record_key_uses(session=session, uses=due, precision=LAST_USE_PRECISION)
                    await session.commit()
            except Exception:
                # Bookkeeping only: the requests were answered long ago; a later use retries.
                for key_id in due:
                    self._written.pop(key_id, None)
                log.warning("could not record the last use of API keys %s", sorted(due), exc_info=True)

    # The grace period is this method's contract: a caller's asyncio.timeout would cancel
    # the wait, not the writer, which must be cancelled once the grace period is over.
    async def aclose(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Let the last-use write in flight finish (for up to `timeout` seconds), then stop it."""
        writer = self._writer
        if writer is None or writer.done():
            return
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(writer), timeout)
        writer.cancel()
