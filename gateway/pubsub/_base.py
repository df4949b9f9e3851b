"""The broker facade, its message types and the interface every backend implements.

The facade owns everything that is per *local* subscriber: a bounded queue each,
fan-out per channel, overflow. A backend owns only the transport and keeps at
most one upstream subscription per channel, so 10,000 subscribers on one channel
cost one Redis subscription (encode/broadcaster opens one per subscriber).
"""

from __future__ import annotations

import abc
import contextlib
import importlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Self
from urllib.parse import urlsplit

from gateway.pubsub.queue import BoundedQueue

__all__ = [
    "Broker",
    "BrokerBackend",
    "BrokerError",
    "BrokerUnavailable",
    "Gap",
    "Message",
    "OnGap",
    "OnMessage",
    "SubscriberOverflow",
    "Subscription",
]


@dataclass(frozen=True, slots=True)
class Message:
    """One published payload. Frozen because one instance is shared by every
    local subscriber of the channel instead of being copied per queue."""

    channel: str
    data: str


@dataclass(frozen=True, slots=True)
class Gap:
    """Messages on `channel` may have been lost before this point.

    The backend yields it once its upstream subscription is live again after an
    outage (or after a subscribe it could not confirm in time), so everything
    after the Gap is delivered. The reader's answer is to catch up from the
    change log from its last cursor, then go on iterating.
    """

    channel: str


class BrokerError(Exception):
    """Base of the errors this package raises on purpose."""


class BrokerUnavailable(BrokerError):
    """The transport cannot be reached. Publishers log it and go on: the change
    is committed in the database and subscribers catch up from the change log."""


class SubscriberOverflow(BrokerError):
    """A subscriber fell `queue_size` messages behind and was cut off so that it
    cannot grow memory; it must resume from its cursor."""

    def __init__(self, channel: str, queue_size: int) -> None:
        super().__init__(f"subscriber on channel {channel!r} fell more than {queue_size} messages behind")
        self.channel = channel
        self.queue_size = queue_size


OnMessage = Callable[[str, str], None]
OnGap = Callable[[str], None]


class Subscription:
    """One local subscriber of a channel: an async iterator of `Message | Gap`.

    Its items wait in a `BoundedQueue` of `queue_size`: past it, the queued items
    are dropped at once and the next `__anext__` raises `SubscriberOverflow` (see
    `gateway.pubsub.queue` for why). Iteration ends (`StopAsyncIteration`) after
    the queue is drained once the broker disconnects.
    """

    __slots__ = ("_queue", "channel")

    def __init__(self, channel: str, queue_size: int) -> None:
        self.channel = channel
        self._queue: BoundedQueue[Message | Gap] = BoundedQueue(
            queue_size, lambda: SubscriberOverflow(channel, queue_size)
        )

    @property
    def overflowed(self) -> bool:
        return self._queue.overflowed

    @property
    def pending(self) -> int:
        """Items queued and not yet read: how far behind this reader is."""
        return self._queue.pending

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Message | Gap:
        return await self._queue.get()

    def _put(self, item: Message | Gap) -> None:
        # Back-to-back outages owe one catch-up, not two.
        if isinstance(item, Gap) and self._queue.newest == item:
            return
        self._queue.put(item)

    def _close(self) -> None:
        self._queue.close()


class BrokerBackend(abc.ABC):
    """A transport between processes, behind `Broker`.

    The facade calls `subscribe` for every new local subscriber and `unsubscribe`
    when the last one of a channel leaves; the backend keeps one upstream
    subscription per channel and hands what arrives to `on_message(channel, data)`
    and `on_gap(channel)`, from the event loop, never from another thread.
    """

    def __init__(self, url: str, *, on_message: OnMessage, on_gap: OnGap) -> None:
        self.url = url
        self._on_message = on_message
        self._on_gap = on_gap

    @abc.abstractmethod
    async def connect(self) -> None:
        """Open the transport; raise `BrokerUnavailable` if it cannot be reached,
        so that a wrong URL shows at startup rather than as silence later."""

    @abc.abstractmethod
    async def disconnect(self) -> None:
        """Stop background tasks and close every connection."""

    @abc.abstractmethod
    async def publish(self, channel: str, message: str) -> None:
        """Send promptly or raise `BrokerUnavailable`; never hang on a dead peer."""

    @abc.abstractmethod
    async def subscribe(self, channel: str) -> None:
        """Make sure `channel` is subscribed upstream; idempotent.

        Return once messages published from now on will be delivered, or, when
        that cannot be confirmed (outage, slow reply), once the backend has noted
        that it owes the channel a `Gap` for when it is live. The subscription
        layer relies on this to read the change log only after the live stream is
        in place.
        """

    @abc.abstractmethod
    def unsubscribe(self, channel: str) -> None:
        """Drop the upstream subscription. Synchronous on purpose: it runs in the
        `finally` of cancelled tasks, so any I/O must be scheduled, not awaited."""

    @property
    @abc.abstractmethod
    def healthy(self) -> bool:
        """Whether messages are flowing in right now (the listener is connected)."""

    @abc.abstractmethod
    async def ping(self) -> bool:
        """Round trip to the transport for readiness probes; never raises."""


# Imported lazily so that `memory://` needs no Redis client installed.
_BACKENDS: Final[dict[str, tuple[str, str]]] = {
    "memory": ("gateway.pubsub.memory", "MemoryBackend"),
    "redis": ("gateway.pubsub.redis", "RedisBackend"),
    "rediss": ("gateway.pubsub.redis", "RedisBackend"),
}


def _backend_class(url: str) -> type[BrokerBackend]:
    scheme = urlsplit(url).scheme
    try:
        module_name, class_name = _BACKENDS[scheme]
    except KeyError:
        known = ", ".join(f"{name}://" for name in _BACKENDS)
        raise ValueError(f"unsupported broker URL scheme {scheme!r} (expected one of {known})") from None
    backend: type[BrokerBackend] = getattr(importlib.import_module(module_name), class_name)
    return backend


class Broker:
    """Carries committed status changes from the process that ingested them to
    the processes that hold subscribers. The backend is chosen by URL scheme.

        async with Broker(url) as broker:
            async with broker.subscribe(channel) as sub:
                async for item in sub:  # Message or Gap
                    ...
    """

    def __init__(self, url: str, *, queue_size: int = 1000, prefix: str = "") -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        self._queue_size = queue_size
        # Put before every channel name on the transport: deployments that share
        # one Redis (pub/sub channels ignore the database number) stay apart.
        self._prefix = prefix
        self._subscribers: dict[str, set[Subscription]] = {}
        self._connected = False
        self._scheme = urlsplit(url).scheme
        self._backend = _backend_class(url)(url, on_message=self._deliver_message, on_gap=self._deliver_gap)

    async def connect(self) -> None:
        if self._connected:
            return
        await self._backend.connect()
        self._connected = True

    async def disconnect(self) -> None:
        """Close the transport and end every open subscription's iteration."""
        if not self._connected:
            return
        self._connected = False
        subscribers, self._subscribers = self._subscribers, {}
        for subs in subscribers.values():
            for sub in subs:
                sub._close()
        await self._backend.disconnect()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.disconnect()

    async def publish(self, channel: str, message: str) -> None:
        """Send `message` to every subscriber of `channel` in every process.

        Raises `BrokerUnavailable` within a few seconds when the transport is
        down; callers publish after commit, so they log it and go on.
        """
        self._require_connected()
        await self._backend.publish(self._prefix + channel, message)

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Subscription]:
        """A subscription that is live on entry and removed on exit, however the
        body ends (break, exception, cancellation)."""
        self._require_connected()
        sub = Subscription(channel, self._queue_size)
        # Registered before the upstream subscribe so that nothing arriving
        # right after its confirmation can miss this queue.
        self._subscribers.setdefault(channel, set()).add(sub)
        try:
            await self._backend.subscribe(self._prefix + channel)
            yield sub
        finally:
            self._remove(sub)

    @property
    def healthy(self) -> bool:
        return self._connected and self._backend.healthy

    async def ping(self) -> bool:
        """For /readyz: connected, listener up, and the transport answers."""
        return self.healthy and await self._backend.ping()

    @property
    def subscriber_count(self) -> int:
        return sum(len(subs) for subs in self._subscribers.values())

    def _require_connected(self) -> None:
        if not self._connected:
            raise RuntimeError(f"{self._scheme}:// broker is not connected; call connect() first")

    def _remove(self, sub: Subscription) -> None:
        sub._close()
        subs = self._subscribers.get(sub.channel)
        if subs is None or sub not in subs:
            return
        subs.discard(sub)
        if not subs:
            del self._subscribers[sub.channel]
            self._backend.unsubscribe(self._prefix + sub.channel)

    def _local(self, channel: str) -> str | None:
        return channel[len(self._prefix) :] if channel.startswith(self._prefix) else None

    def _deliver_message(self, channel: str, data: str) -> None:
        local = self._local(channel)
        if local is None:  # another prefix's channel
            return
        subs = self._subscribers.get(local)
        if subs:
            message = Message(local, data)
            for sub in subs:
                sub._put(message)

    def _deliver_gap(self, channel: str) -> None:
        local = self._local(channel)
        if local is None:  # another prefix's channel
            return
        subs = self._subscribers.get(local)
        if subs:
            gap = Gap(local)
            for sub in subs:
                sub._put(gap)
