"""The change feed: one reader of the change log per process, fanning out to subscribers.

Whatever the number of live subscriptions, a process runs ONE query per burst of
changes: the broker only announces that something was committed (any process may
have written it), and the feed then reads every change after its position, in
position order and below the writers' watermark (`repositories.changes`), and
hands each one to the local listeners of its tenant whose filter admits it.
Announcements may be lost (a broker outage) or reordered: the feed also polls,
and a broker reconnection (`Gap`) triggers a read at once, so nothing is ever
missed, only delayed.

Delivery has one path. Listeners are indexed by tenant and filter: a change is
tested once per distinct filter, not once per subscriber. Each matching listener
then either takes the change at once, in the feed's own task (a listener with a
sink, idle: the live fast path writes the frame it rendered once for everybody,
with no task switch), or queues it in its `BoundedQueue` (a subscriber still
replaying, one being sent to, or strawberry's resolver, which reads by
iterating). A queue holds at most `queue_size` changes: past that the subscriber
is told so (`SlowConsumer`) instead of growing memory, and resumes from its cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import orjson

from gateway import models
from gateway.db import SessionFactory
from gateway.events import CHANGES_CHANNEL
from gateway.pubsub import BoundedQueue, Broker, Message
from gateway.repositories.changes import (
    Position,
    latest_position,
    list_changes_after,
    list_document_ids_by_email_ids,
)

__all__ = ["ChangeFeed", "FeedItem", "FeedObserver", "Listener", "Sink", "SlowConsumer", "Wanted", "position_of"]

log = logging.getLogger(__name__)

_BATCH = 1000
_HELD_BACK_RETRIES = 20
_HELD_BACK_DELAY = 0.01
_WAKE_CHUNK = 256  # listeners served per turn of the event loop


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


def position_of(change: models.StatusChange) -> Position:
    """A change's place in the log: (txid, id), both set once it is written."""
    if change.txid is None or change.id is None:
        raise ValueError(f"change {change.id} of e-mail {change.email_id} has no position: it was never written")
    return (change.txid, change.id)


class SlowConsumer(Exception):
    """The listener's queue overflowed: its subscriber must reconnect and resume."""


@dataclass(frozen=True, slots=True)
class FeedItem:
    position: Position
    change: models.StatusChange
    email: models.Email
    document_ids: frozenset[int] | None


class Wanted(Hashable, Protocol):
    """A subscriber's filter (`resolvers.live.ChangeFilter`): equal filters share one test per change."""

    @property
    def wants_documents(self) -> bool: ...

    def admits(self, change: models.StatusChange, email: models.Email, documents: frozenset[int] | None) -> bool: ...


# Writes one change to the subscriber (the live fast path's frame). It may wait only
# for the socket; whatever it raises ends the subscription with that error.
Sink = Callable[[FeedItem], Awaitable[None]]


def _slow_consumer(size: int) -> SlowConsumer:
    return SlowConsumer(f"more than {size} changes waiting")


class Listener:
    """One subscription's share of the feed: its tenant's changes that its filter admits.

    Until the subscriber says where it starts (`start` or `live`, once its replay
    is over), changes queue. Then a listener without a sink is read by iterating
    it; a listener with a sink is `idle` while nothing is queued or being sent, and
    the feed awaits `send` for it directly. A send that has to wait for the socket
    is handed over (`stalled`): that change and the following ones queue, and a
    task of the listener's own sends them, in order, until the queue is empty.
    Changes at or before `position` are skipped (the replay's seam).
    """

    __slots__ = ("_drainer", "_ended", "_idle", "_queue", "_sink", "position", "ready", "tenant_id", "wanted")

    def __init__(self, tenant_id: int, wanted: Wanted | None, size: int, sink: Sink | None = None) -> None:
        self.tenant_id = tenant_id
        self.wanted = wanted
        self._queue: BoundedQueue[FeedItem] = BoundedQueue(size, functools.partial(_slow_consumer, size))
        self._sink = sink
        self._idle = False
        # Why a subscription with a sink ended (SlowConsumer, the socket's error).
        self._ended: asyncio.Future[None] | None = (
            asyncio.get_running_loop().create_future() if sink is not None else None
        )
        self._drainer: asyncio.Task[None] | None = None
        self.position: Position = (0, 0)
        # Set once the subscriber knows where it starts: from then on, every change
        # committed is delivered (operators and tests can wait for it).
        self.ready = False

    @property
    def idle(self) -> bool:
        """Whether the feed may `send` to it now: started, with a sink, nothing queued or in flight."""
        return self._idle

    @property
    def pending(self) -> int:
        return self._queue.pending

    def put(self, item: FeedItem) -> None:
        """Queue `item` for the subscriber's own task; past the bound, the subscription ends."""
        if not self._queue.put(item) and self._queue.overflowed and self._ended is not None:
            self._end(_slow_consumer(self._queue.size))

    async def send(self, item: FeedItem) -> None:
        """Write `item` through the sink in the caller's task; only while `idle`."""
        if item.position <= self.position:
            return
        self._idle = False
        sink = self._sink  # checked here, not in a helper: this runs once per subscriber and change
        try:
            if sink is None:  # only a listener with a sink is idle
                raise RuntimeError("a listener read by iteration has nothing to send through")
            await sink(item)
        except Exception as error:  # the socket is gone: nothing more goes out
            self._end(error)
            return
        self.position = item.position
        self._idle = True

    def _write(self, item: FeedItem) -> Awaitable[None]:
        if self._sink is None:  # only a listener with a sink is idle, stalls or goes live
            raise RuntimeError("a listener read by iteration has nothing to send through")
        return self._sink(item)

    def stalled(self, item: FeedItem) -> None:
        """`send(item)` was cancelled while it waited for the socket, before writing:
        the listener's own task sends it, then whatever queues meanwhile (unless the
        subscription ended while it waited: its queue is closed then)."""
        if self._queue.put(item):
            self._drainer = asyncio.create_task(self._drain())

    def start(self, position: Position) -> None:
        """For a listener read by iteration: deliver what comes after `position`."""
        self.position = max(self.position, position)
        self.ready = True

    async def live(self, position: Position) -> None:
        """For a listener with a sink: send what queued after `position`, then leave
        the sending to the feed. Returns never; raises why the subscription ended."""
        if self._ended is None:
            raise RuntimeError("a listener read by iteration does not go live: iterate it")
        self.start(position)
        await self._drain()
        await self._ended

    async def _drain(self) -> None:
        try:
            while (item := self._queue.get_nowait()) is not None:
                if item.position > self.position:
                    await self._write(item)
                    self.position = item.position
        except Exception as error:  # SlowConsumer, or the socket is gone
            self._end(error)
            return
        self._idle = True  # nothing queued, nothing in flight: the feed sends directly again

    def _end(self, error: Exception) -> None:
        self._idle = False
        self._queue.close()
        if self._ended is not None and not self._ended.done():
            self._ended.set_exception(error)

    def close(self) -> None:
        self._idle = False
        self._queue.close()
        if self._drainer is not None:
            self._drainer.cancel()
        if self._ended is not None:
            if not self._ended.done():
                self._ended.cancel()
            elif not self._ended.cancelled():
                self._ended.exception()  # retrieved: whoever awaited it has left

    def __aiter__(self) -> Listener:
        return self

    async def __anext__(self) -> FeedItem:
        while True:
            item = await self._queue.get()
            if item.position > self.position:
                self.position = item.position
                return item


class ChangeFeed:
    """Reads the change log after each announcement (and on a timer) and fans out.

    `prepare(item)`, when given, is awaited before a change goes out to the
    listeners it matches (the live fast path renders it there, once per shared
    selection); its errors stay with the subscribers, who render it themselves.
    """

    def __init__(
        self,
        *,
        session_factory: SessionFactory,
        broker: Broker,
        queue_size: int,
        poll_interval: float,
        observer: FeedObserver | None = None,
        prepare: Callable[[FeedItem], Awaitable[None]] | None = None,
    ) -> None:
        self._sessions = session_factory
        self._observer: FeedObserver = observer or _Unobserved()
        self._broker = broker
        self._queue_size = queue_size
        self._poll = poll_interval
        self._prepare = prepare
        # tenant -> filter -> its listeners: a change is tested once per distinct filter.
        self._listeners: dict[int, dict[Wanted | None, set[Listener]]] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.position: Position = (0, 0)
        self._announced: Position = (0, 0)
        self.stalls = 0  # sends that had to wait for their socket: handed to the listener's task

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

    def _all(self) -> list[Listener]:
        return [li for buckets in self._listeners.values() for group in buckets.values() for li in group]

    @property
    def listener_count(self) -> int:
        return sum(len(group) for buckets in self._listeners.values() for group in buckets.values())

    @property
    def ready_count(self) -> int:
        return sum(li.ready for li in self._all())

    @contextlib.asynccontextmanager
    async def listen(
        self, tenant_id: int, wanted: Wanted | None = None, *, sink: Sink | None = None
    ) -> AsyncIterator[Listener]:
        """A listener that gets every change of the tenant that `wanted` admits, read after this point."""
        listener = Listener(tenant_id, wanted, self._queue_size, sink)
        self._listeners.setdefault(tenant_id, {}).setdefault(wanted, set()).add(listener)
        self._observer.subscribed(1)
        try:
            yield listener
        finally:
            self._observer.subscribed(-1)
            buckets = self._listeners.get(tenant_id, {})
            group = buckets.get(wanted)
            if group is not None:
                group.discard(listener)
                if not group:
                    del buckets[wanted]
                    if not buckets:
                        del self._listeners[tenant_id]
            listener.close()

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

    def _wants_documents(self) -> bool:
        return any(w is not None and w.wants_documents for buckets in self._listeners.values() for w in buckets)

    def _matching(self, item: FeedItem) -> list[Listener]:
        buckets = self._listeners.get(item.change.tenant_id)
        if not buckets:
            return []
        change, email, documents = item.change, item.email, item.document_ids
        return [
            listener
            for wanted, group in buckets.items()
            if wanted is None or wanted.admits(change, email, documents)
            for listener in group
        ]

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
                if rows and self._wants_documents():
                    documents = await list_document_ids_by_email_ids(
                        session=session, email_ids=sorted({c.email_id for c, _ in rows})
                    )
            for change, email in rows:
                position = position_of(change)
                self.position = position
                item = FeedItem(position, change, email, documents.get(change.email_id))
                listeners = self._matching(item)
                if not listeners:
                    continue
                if self._prepare is not None:
                    try:
                        await self._prepare(item)
                    except Exception:  # the subscribers render it themselves then
                        log.warning("preparing a change for its subscribers failed", exc_info=True)
                await self._fan_out(item, listeners)
            if rows:
                self._observer.delivered(rows[-1][0].recorded_at)
            total += len(rows)
            if len(rows) < _BATCH:
                return total

    async def _fan_out(self, item: FeedItem, listeners: list[Listener]) -> None:
        """Hand `item` to each listener: sent at once where one is idle, else queued.

        The sends run in this task, one after the other, with no task switch: a
        socket takes a frame without waiting unless its buffers are full. A send
        that does wait is cancelled at once by the zero timeout around it, before
        it has written anything (the ASGI server's send waits for the socket to be
        writable before it writes: uvicorn's websockets-sansio and wsproto
        protocols do), and that listener's own task takes the change over, so one
        slow socket never holds the others back. A listener that registers
        between chunks reads its start after this change: it needs nothing from
        this fan-out.
        """
        count = len(listeners)
        index = 0
        while index < count:
            end = min(index + _WAKE_CHUNK, count)
            while index < end:
                try:
                    async with asyncio.timeout(0):
                        while index < end:
                            listener = listeners[index]
                            index += 1
                            if listener.idle:
                                await listener.send(item)
                            else:
                                listener.put(item)
                except TimeoutError:
                    self.stalls += 1
                    listeners[index - 1].stalled(item)
            # Let the loop poll between chunks: with thousands of subscribers,
            # webhooks and queries are served while the change goes out.
            await asyncio.sleep(0)
