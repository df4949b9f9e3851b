"""The change feed: one reader of the change log per process, fanning out to subscribers.

Whatever the number of live subscriptions, a process runs ONE query per burst of
changes: the broker only announces that something was committed (any process may
have written it), and the feed then reads every change after its position, in
position order and below the writers' watermark (`repositories.changes`), and
hands each one to the local listeners of its tenant. Announcements may be lost
(a broker outage) or reordered: the feed also polls, and a broker reconnection
(`Gap`) triggers a read at once, so nothing is ever missed, only delayed.

Each listener has a bounded queue: a subscriber that does not keep up is told so
(`SlowConsumer`) instead of growing memory, and resumes from its last cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import orjson

from gateway import models
from gateway.db import SessionFactory
from gateway.ingest import CHANGES_CHANNEL
from gateway.pubsub import Broker, Message
from gateway.repositories.changes import (
    Position,
    latest_position,
    list_changes_after,
    list_document_ids_by_email_ids,
)

__all__ = ["ChangeFeed", "FeedItem", "FeedObserver", "Listener", "SlowConsumer"]

log = logging.getLogger(__name__)

_BATCH = 1000
_HELD_BACK_RETRIES = 20
_HELD_BACK_DELAY = 0.01
_WAKE_CHUNK = 256  # subscribers woken per turn of the event loop


class FeedObserver(Protocol):
    """What the feed tells the metrics: subscriptions coming and going, reads, deliveries."""

    def subscribed(self, delta: int) -> None: ...

    def feed_read(self) -> None: ...

    def delivered(self, recorded_at: datetime) -> None: ...


class _Unobserved:
    def subscribed(self, delta: int) -> None:
        pass

    def feed_read(self) -> None:
        pass

    def delivered(self, recorded_at: datetime) -> None:
        pass


class SlowConsumer(Exception):
    """The listener's queue overflowed: its subscriber must reconnect and resume."""


@dataclass(frozen=True, slots=True)
class FeedItem:
    position: Position
    change: models.StatusChange
    email: models.Email
    document_ids: frozenset[int] | None


class Listener:
    """One subscription's view of the feed: its tenant's changes, at most `size` queued.

    A deque and one future at a time, rather than an asyncio.Queue and an Event
    with two tasks per wait: an idle subscription costs a few hundred bytes here.
    """

    __slots__ = ("_items", "_size", "_waiter", "direct", "overflowed", "ready", "tenant_id", "wants_documents")

    def __init__(self, tenant_id: int, size: int, wants_documents: bool) -> None:
        self.tenant_id = tenant_id
        self.wants_documents = wants_documents
        self._items: deque[FeedItem] = deque()
        self._size = size
        self._waiter: asyncio.Future[None] | None = None
        self.overflowed = False
        # Set by the subscriber once it knows where it starts: from then on, every
        # change committed is delivered (operators and tests can wait for it).
        self.ready = False
        # The subscriber's synchronous delivery, if it has one: it returns True when
        # it has handled the item, and the subscriber's task is not woken at all.
        self.direct: Callable[[FeedItem], bool] | None = None

    def put(self, item: FeedItem) -> None:
        if self.overflowed:
            return
        direct = self.direct
        if direct is not None and not self._items and direct(item):
            return
        if len(self._items) >= self._size:
            self.overflowed = True
            self._items.clear()  # the subscriber resumes from its cursor: free them now
        else:
            self._items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def __aiter__(self) -> Listener:
        return self

    async def __anext__(self) -> FeedItem:
        while True:
            if self.overflowed:
                raise SlowConsumer(f"more than {self._size} changes waiting")
            if self._items:
                return self._items.popleft()
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None


class ChangeFeed:
    """Reads the change log after each announcement (and on a timer) and fans out."""

    def __init__(
        self,
        *,
        session_factory: SessionFactory,
        broker: Broker,
        queue_size: int,
        poll_interval: float,
        observer: FeedObserver | None = None,
    ) -> None:
        self._sessions = session_factory
        self._observer: FeedObserver = observer or _Unobserved()
        self._broker = broker
        self._queue_size = queue_size
        self._poll = poll_interval
        self._listeners: dict[int, set[Listener]] = defaultdict(set)
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.position: Position = (0, 0)
        self._announced: Position = (0, 0)
        # Called with each change before it goes out (the live fast path renders it
        # once per shared selection there); its errors stay with the subscribers.
        self.prepare: Callable[[FeedItem], Awaitable[None]] | None = None

    async def start(self) -> None:
        try:
            async with self._sessions() as session:
                self.position = await latest_position(session=session)
        except Exception:  # the database may come up later: start from the top then
            log.warning("change feed starts without a position", exc_info=True)
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._announcements())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    @property
    def listener_count(self) -> int:
        return sum(len(group) for group in self._listeners.values())

    @property
    def ready_count(self) -> int:
        return sum(li.ready for group in self._listeners.values() for li in group)

    @contextlib.asynccontextmanager
    async def listen(self, tenant_id: int, *, wants_documents: bool = False) -> AsyncIterator[Listener]:
        """A listener that gets every change of the tenant read after this point."""
        listener = Listener(tenant_id, self._queue_size, wants_documents)
        self._listeners[tenant_id].add(listener)
        self._observer.subscribed(1)
        try:
            yield listener
        finally:
            self._observer.subscribed(-1)
            group = self._listeners.get(tenant_id)
            if group is not None:
                group.discard(listener)
                if not group:
                    del self._listeners[tenant_id]

    def _note(self, data: str) -> None:
        try:
            txid, pk = orjson.loads(data)["position"]
            self._announced = max(self._announced, (int(txid), int(pk)))
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed change announcement")

    def poke(self) -> None:
        """Read the log now (an announcement arrived, or a test wants it)."""
        self._wake.set()

    async def _announcements(self) -> None:
        while True:
            try:
                await self._broker.connect()  # no-op once connected; retried after an outage at start
                async with self._broker.subscribe(CHANGES_CHANNEL) as subscription:
                    async for item in subscription:  # a Message or a Gap: read either way
                        if isinstance(item, Message):
                            self._note(item.data)
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception:  # broker trouble: the timer still reads the log
                log.warning("change announcements unavailable; polling", exc_info=True)
            await asyncio.sleep(self._poll)

    async def _read(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll)
            self._wake.clear()
            try:
                await self._catch_up()
                self._observer.feed_read()
                for _ in range(_HELD_BACK_RETRIES):
                    if self._announced <= self.position or not self._listeners:
                        break
                    # Announced but not readable yet: an older transaction is still
                    # in flight and holds the watermark back. Try again shortly.
                    await asyncio.sleep(_HELD_BACK_DELAY)
                    await self._catch_up()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("change feed could not read the log", exc_info=True)

    async def _catch_up(self) -> int:
        """Dispatch every readable change after the position; how many there were."""
        if not self._listeners:
            # Nobody to tell: just move on, without reading the changes themselves.
            async with self._sessions() as session:
                latest = await latest_position(session=session)
            if not self._listeners:
                self.position = max(self.position, latest)
                return 0
            # Somebody subscribed meanwhile. Its replay may have ended before
            # `latest`: moving on would skip what lies between for it. Read.
        total = 0
        while True:
            async with self._sessions() as session:
                rows = await list_changes_after(session=session, after=self.position, limit=_BATCH)
                documents = {}
                if rows and any(li.wants_documents for g in self._listeners.values() for li in g):
                    documents = await list_document_ids_by_email_ids(
                        session=session, email_ids=sorted({c.email_id for c, _ in rows})
                    )
            woken = 0
            for change, email in rows:
                position = (change.txid, change.id)
                self.position = position  # type: ignore[assignment]
                item = FeedItem(position, change, email, documents.get(change.email_id))  # type: ignore[arg-type]
                listeners = tuple(self._listeners.get(change.tenant_id, ()))
                if listeners and self.prepare is not None:
                    try:
                        await self.prepare(item)
                    except Exception:  # the subscribers render it themselves then
                        log.warning("preparing a change for its subscribers failed", exc_info=True)
                for listener in listeners:
                    listener.put(item)
                    woken += 1
                    if woken % _WAKE_CHUNK == 0:
                        # Let the loop poll between chunks: with thousands of subscribers,
                        # webhooks and queries are served while the changes go out.
                        # (A listener that registers meanwhile reads its start after
                        # this change: it needs nothing from this fan-out.)
                        await asyncio.sleep(0)
            if rows:
                self._observer.delivered(rows[-1][0].recorded_at)
            total += len(rows)
            if len(rows) < _BATCH:
                return total
