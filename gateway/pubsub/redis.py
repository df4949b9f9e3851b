"""The Redis backend (`redis://`, `rediss://`): one connection to publish and one
pub/sub connection per process, whatever the number of subscribers.

redis-py's `PubSub` is not used for listening: its retry layer reconnects and
re-subscribes behind our back, which hides exactly the moment a `Gap` must be
reported. Instead one raw connection per *session* is read by one task and
written by another, and a lost session is replaced as a whole by a supervisor
with capped exponential backoff.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from gateway.pubsub._base import BrokerBackend, BrokerUnavailable, OnGap, OnMessage

__all__ = ["RedisBackend"]

logger = logging.getLogger(__name__)

# Short on purpose: a publish against a dead Redis must fail in about a second
# (the change is committed already), not stall the request that made it.
# A URL's ?socket_timeout= and ?socket_connect_timeout= take precedence.
_SOCKET_TIMEOUT: Final = 2.0
_CONNECT_TIMEOUT: Final = 1.0
# A silent pub/sub connection is PINGed after this long; no reply within the
# socket timeout means a half-open TCP connection, which would otherwise go
# unnoticed until the kernel's keepalive gives up minutes later.
_PING_INTERVAL: Final = 5.0
_RECONNECT_MIN: Final = 0.1
_RECONNECT_MAX: Final = 5.0


def _where(url: str) -> str:
    """host:port/db for messages and logs; never the password."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 6379}{parts.path}"


async def _stop(*tasks: asyncio.Task[Any]) -> None:
    """Cancel tasks and wait until they have ended.

    Cancelling once is not enough on Python 3.11: the `asyncio.wait_for` inside
    redis-py's connect and send swallows a cancellation that arrives as the
    operation completes (CPython gh-86296), and the task would run on.
    """
    while pending := [task for task in tasks if not task.done()]:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=0.1)
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved here; _serve re-raises it from result()


@dataclass(eq=False)
class _Session:
    """The state of one pub/sub connection, thrown away with it so that nothing
    from a dead connection can be mistaken for a fact about the next one."""

    conn: AbstractConnection
    # Channels whose latest command on this connection was SUBSCRIBE.
    sent: set[str] = field(default_factory=set)
    # SUBSCRIBE commands awaiting their confirmation, per channel: a channel can
    # be unsubscribed and subscribed again before the first reply arrives.
    pending: dict[str, int] = field(default_factory=dict)
    # Confirmed, and not unsubscribed since: publishes now reach us.
    live: set[str] = field(default_factory=set)
    waiters: dict[str, asyncio.Future[None]] = field(default_factory=dict)
    ping_due: bool = False


class RedisBackend(BrokerBackend):
    """Redis pub/sub. Publishing fails fast with `BrokerUnavailable`; listening
    survives outages and reports them to each channel as one `Gap`."""

    def __init__(
        self,
        url: str,
        *,
        on_message: OnMessage,
        on_gap: OnGap,
        ping_interval: float = _PING_INTERVAL,
        reconnect_min: float = _RECONNECT_MIN,
        reconnect_max: float = _RECONNECT_MAX,
    ) -> None:
        super().__init__(url, on_message=on_message, on_gap=on_gap)
        self._where = _where(url)
        self._ping_interval = ping_interval
        self._reconnect_min = reconnect_min
        self._reconnect_max = reconnect_max
        self._reply_timeout = _SOCKET_TIMEOUT
        self._publisher: Redis | None = None
        self._pool: ConnectionPool | None = None
        self._session: _Session | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        # Channels with local subscribers, and those of them that may have
        # missed messages and get a Gap as soon as they are live again.
        self._wanted: set[str] = set()
        self._owes_gap: set[str] = set()

    # -- lifecycle ---------------------------------------------------------

    async def connect(self) -> None:
        if self._supervisor is not None:
            return
        options: dict[str, Any] = {
            "socket_timeout": _SOCKET_TIMEOUT,
            "socket_connect_timeout": _CONNECT_TIMEOUT,
            "decode_responses": True,
        }
        # One immediate retry heals the stale connection a Redis restart leaves
        # behind. Not on timeouts: a server that is there but mute would only
        # double the wait for the BrokerUnavailable the caller expects.
        self._publisher = Redis.from_url(
            self.url,
            single_connection_client=True,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            **options,
        )
        # The listener retries nothing itself: the supervisor does, knowingly.
        # RESP2 unless the URL asks otherwise: pub/sub messages are then plain
        # replies, with no push handler in between.
        self._pool = ConnectionPool.from_url(
            self.url,
            retry=Retry(NoBackoff(), 0),
            encoding_errors="replace",
            protocol=2,
            **options,
        )
        configured = self._pool.connection_kwargs.get("socket_timeout")
        self._reply_timeout = float(configured) if configured else _SOCKET_TIMEOUT
        self._wake = asyncio.Event()
        try:
            await self._publisher.ping()
            session = await self._open_session()
        except BaseException as exc:  # a cancelled connect must not leak sockets either
            await self._close_clients()
            if isinstance(exc, RedisError | OSError):
                raise BrokerUnavailable(f"cannot reach Redis at {self._where}: {exc}") from exc
            raise
        self._start_session(session)
        self._supervisor = asyncio.create_task(self._supervise(session), name=f"gateway.pubsub listener {self._where}")

    async def disconnect(self) -> None:
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            await _stop(supervisor)
        self._session = None
        self._wanted.clear()
        self._owes_gap.clear()
        await self._close_clients()

    async def _close_clients(self) -> None:
        publisher, self._publisher = self._publisher, None
        pool, self._pool = self._pool, None
        if publisher is not None:
            await publisher.aclose()
        if pool is not None:
            await pool.aclose()

    # -- the BrokerBackend operations ----------------------------------------

    async def publish(self, channel: str, message: str) -> None:
        if self._publisher is None:
            raise BrokerUnavailable(f"Redis broker at {self._where} is not connected")
        try:
            await self._publisher.publish(channel, message)
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable(f"cannot publish to channel {channel!r} on Redis at {self._where}: {exc}") from exc

    async def subscribe(self, channel: str) -> None:
        self._wanted.add(channel)
        session = self._session
        if session is None:
            # Outage: don't make the caller wait for it. The supervisor
            # subscribes on reconnect, and the Gap tells the subscriber.
            self._owes_gap.add(channel)
            return
        if channel in session.live:
            return
        waiter = session.waiters.get(channel)
        if waiter is None:
            waiter = session.waiters[channel] = asyncio.get_running_loop().create_future()
        self._wake.set()
        try:
            # shield: the waiter is shared by every subscriber joining meanwhile.
            async with asyncio.timeout(self._reply_timeout):
                await asyncio.shield(waiter)
        except TimeoutError:
            self._owes_gap.add(channel)

    def unsubscribe(self, channel: str) -> None:
        self._wanted.discard(channel)
        self._owes_gap.discard(channel)
        if self._session is not None:
            self._wake.set()

    @property
    def healthy(self) -> bool:
        return self._session is not None

    async def ping(self) -> bool:
        if self._session is None or self._publisher is None:
            return False
        try:
            return bool(await self._publisher.ping())
        except (RedisError, OSError):
            return False

    # -- the listener ----------------------------------------------------------

    async def _open_session(self) -> _Session:
        if self._pool is None:
            raise RedisConnectionError("Redis broker is disconnected")
        # redis-py leaves get_connection unannotated.
        return _Session(await self._pool.get_connection())  # type: ignore[no-untyped-call]

    def _start_session(self, session: _Session) -> None:
        self._session = session
        self._wake.set()  # so that the writer subscribes every wanted channel

    async def _end_session(self, session: _Session) -> None:
        # Bookkeeping first, without awaiting, so that no subscriber sees a
        # half-ended session: every wanted channel now owes a Gap.
        if self._session is session:
            self._session = None
        self._owes_gap |= self._wanted
        for waiter in session.waiters.values():
            if not waiter.done():
                waiter.set_result(None)
        session.waiters.clear()
        try:
            await session.conn.disconnect(nowait=True)
        except (RedisError, OSError):
            logger.debug("error closing the pub/sub connection", exc_info=True)
        if self._pool is not None:
            await self._pool.release(session.conn)

    async def _supervise(self, session: _Session) -> None:
        current: _Session | None = session
        attempt = 0
        lost_at = 0.0
        loop = asyncio.get_running_loop()
        while True:
            if current is not None:
                try:
                    await self._serve(current)
                except (RedisError, OSError) as exc:
                    logger.warning("Redis pub/sub at %s lost: %s; reconnecting", self._where, exc)
                except Exception:
                    # A bug must not end listening for the life of the process.
                    logger.exception("Redis pub/sub listener at %s failed", self._where)
                finally:
                    await self._end_session(current)
                current = None
                attempt = 0
                lost_at = loop.time()
            await asyncio.sleep(self._backoff(attempt))
            attempt += 1
            try:
                current = await self._open_session()
            except (RedisError, OSError) as exc:
                logger.debug("Redis pub/sub at %s still down: %s", self._where, exc)
                continue
            self._start_session(current)
            logger.warning("Redis pub/sub at %s back after %.1fs", self._where, loop.time() - lost_at)

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self._reconnect_max, self._reconnect_min * 2 ** min(attempt, 32))
        # Jitter spreads the reconnects of many replicas after a Redis restart.
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not cryptography

    async def _serve(self, session: _Session) -> None:
        """Read and write one connection until either side fails."""
        reader = asyncio.create_task(self._read(session))
        writer = asyncio.create_task(self._write(session))
        try:
            done, _ = await asyncio.wait((reader, writer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            # Both stop before the connection is closed, or the writer's next
            # send would silently reconnect it.
            await _stop(reader, writer)
        for task in done:
            task.result()
        raise RedisConnectionError("pub/sub loop ended")  # pragma: no cover - loops never return

    async def _write(self, session: _Session) -> None:
        """The only writer of the connection, so that commands keep their order;
        it sends the difference between wanted and subscribed channels, which also
        folds a leave-and-rejoin of a channel into nothing."""
        conn = session.conn
        while True:
            await self._wake.wait()
            self._wake.clear()
            stale = session.sent - self._wanted
            fresh = self._wanted - session.sent
            ping, session.ping_due = session.ping_due, False
            if stale:
                session.sent -= stale
                session.live -= stale
                for channel in stale:
                    # Nobody awaits it: a subscriber still waiting keeps its channel wanted.
                    waiter = session.waiters.pop(channel, None)
                    if waiter is not None:
                        waiter.cancel()
                await conn.send_command("UNSUBSCRIBE", *stale, check_health=False)
            if fresh:
                session.sent |= fresh
                for channel in fresh:
                    session.pending[channel] = session.pending.get(channel, 0) + 1
                await conn.send_command("SUBSCRIBE", *fresh, check_health=False)
            if ping:
                await conn.send_command("PING", check_health=False)

    async def _read(self, session: _Session) -> None:
        conn = session.conn
        timeout = self._ping_interval
        awaiting_pong = False
        while True:
            # A timed-out read keeps partial data in the parser, so polling is safe.
            response = await conn.read_response(timeout=timeout, disconnect_on_error=False, push_request=True)
            if response is None:
                if awaiting_pong:
                    raise RedisConnectionError(f"no reply to PING within {timeout:g}s")
                session.ping_due = True
                self._wake.set()
                awaiting_pong = True
                timeout = self._reply_timeout
                continue
            awaiting_pong = False
            timeout = self._ping_interval
            self._handle(session, response)

    def _handle(self, session: _Session, response: object) -> None:
        if not isinstance(response, list) or len(response) < 2:
            return
        kind = response[0]
        if kind == "message":
            self._on_message(response[1], response[2])
        elif kind == "subscribe":
            self._confirmed(session, response[1])
        # "unsubscribe" and "pong" only prove the connection is alive.

    def _confirmed(self, session: _Session, channel: str) -> None:
        left = session.pending.get(channel, 0) - 1
        if left > 0:
            session.pending[channel] = left
            return
        session.pending.pop(channel, None)
        if channel not in session.sent:
            return
        session.live.add(channel)
        waiter = session.waiters.pop(channel, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if channel in self._owes_gap:
            self._owes_gap.discard(channel)
            self._on_gap(channel)
