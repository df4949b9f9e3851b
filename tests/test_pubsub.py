"""The broker, against both backends, and through a real Redis outage.

Redis tests need a server on 127.0.0.1:6379 (outage tests start their own
`redis-server`): without one they are skipped, except under CI=true where a
missing service is a failure, not a reason to go green.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import NoReturn

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.pubsub import (
    BoundedQueue,
    Broker,
    BrokerUnavailable,
    Gap,
    Message,
    SubscriberOverflow,
    Subscription,
)

REDIS_URL = "redis://127.0.0.1:6379/0"
# How long a test waits for something that should happen. Generous for a slow
# shared 2-core machine: a passing test never waits this long.
PATIENCE = 20.0

MakeBroker = Callable[..., Awaitable[Broker]]


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: a missing service is a failure)")
    pytest.skip(reason)


async def _redis_answers(url: str) -> bool:
    client = Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(await client.ping())
    except (RedisError, OSError):
        return False
    finally:
        await client.aclose()


async def _next(sub: Subscription, within: float = PATIENCE) -> Message | Gap:
    return await asyncio.wait_for(anext(sub), within)


async def _eventually(check: Callable[[], bool | Awaitable[bool]], what: str) -> None:
    """Poll `check` until it holds; fail after PATIENCE seconds."""
    deadline = time.monotonic() + PATIENCE
    while True:
        result = check()
        if result if isinstance(result, bool) else await result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"not within {PATIENCE}s: {what}")
        await asyncio.sleep(0.02)


async def _numsub(admin: Redis, channel: str) -> int:
    [(_, count)] = await admin.pubsub_numsub(channel)
    return int(count)


async def _numsub_is(admin: Redis, channel: str, expected: int) -> bool:
    return await _numsub(admin, channel) == expected


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class _RedisServer:
    """A throwaway redis-server on its own port, to kill and restart at will."""

    def __init__(self, binary: str, port: int) -> None:
        self.binary = binary
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        options = {"port": str(self.port), "bind": "127.0.0.1", "save": "", "appendonly": "no"}
        self._process = await asyncio.create_subprocess_exec(
            self.binary,
            *(arg for name, value in options.items() for arg in (f"--{name}", value)),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        deadline = time.monotonic() + PATIENCE
        while not await _redis_answers(self.url):
            if self._process.returncode is not None:
                pytest.fail(f"redis-server on port {self.port} exited: {self._process.returncode}")
            if time.monotonic() > deadline:
                pytest.fail(f"redis-server on port {self.port} did not answer within {PATIENCE}s")
            await asyncio.sleep(0.05)

    def pause(self) -> None:
        """Freeze the server: its sockets stay open but nothing answers, like a
        half-open connection or a Redis stuck on a slow disk."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    async def kill(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()


# -- fixtures ------------------------------------------------------------------


@pytest.fixture(params=["memory://", REDIS_URL], ids=["memory", "redis"])
async def url(request: pytest.FixtureRequest) -> str:
    url: str = request.param
    if url.startswith("redis") and not await _redis_answers(url):
        _unavailable(f"no Redis answering at {url}")
    return url


@pytest.fixture
async def make_broker(url: str) -> AsyncIterator[MakeBroker]:
    brokers: list[Broker] = []

    async def make(*, queue_size: int = 1000) -> Broker:
        broker = Broker(url, queue_size=queue_size)
        await broker.connect()
        brokers.append(broker)
        return broker

    yield make
    for broker in brokers:
        await broker.disconnect()


@pytest.fixture
async def broker(make_broker: MakeBroker) -> Broker:
    return await make_broker()


@pytest.fixture
def channel(request: pytest.FixtureRequest) -> str:
    """Unique per test and per run, so parallel runs on one Redis never meet."""
    return f"test:pubsub:{request.node.name}:{uuid.uuid4().hex}"


@pytest.fixture
async def admin(url: str) -> AsyncIterator[Redis | None]:
    """A separate client to look at the broker's Redis from outside; None on memory://."""
    if not url.startswith("redis"):
        yield None
        return
    client = Redis.from_url(url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def redis_server() -> AsyncIterator[_RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        _unavailable("redis-server is not on PATH")
    server = _RedisServer(binary, _free_port())
    await server.start()
    try:
        yield server
    finally:
        await server.kill()


# -- both backends -------------------------------------------------------------


async def test_messages_arrive_in_publish_order(broker: Broker, channel: str) -> None:
    # given
    sent = [f"m{i}" for i in range(50)]

    async with broker.subscribe(channel) as sub:
        # when
        for data in sent:
            await broker.publish(channel, data)

        # then
        received = [await _next(sub) for _ in sent]
    assert received == [Message(channel, data) for data in sent]


async def test_every_subscriber_gets_every_message(broker: Broker, channel: str) -> None:
    # given
    sent = [f"m{i}" for i in range(20)]

    async with contextlib.AsyncExitStack() as stack:
        subs = [await stack.enter_async_context(broker.subscribe(channel)) for _ in range(3)]

        # when
        for data in sent:
            await broker.publish(channel, data)

        # then
        for sub in subs:
            assert [await _next(sub) for _ in sent] == [Message(channel, d) for d in sent]


async def test_channels_are_isolated(broker: Broker, channel: str) -> None:
    # given
    other = f"{channel}:other"

    async with broker.subscribe(channel) as mine, broker.subscribe(other) as theirs:
        # when
        await broker.publish(other, "for them")
        await broker.publish(channel, "for me")
        await broker.publish(other, "for them again")

        # then: each sees only its own channel, in order
        assert await _next(mine) == Message(channel, "for me")
        assert await _next(theirs) == Message(other, "for them")
        assert await _next(theirs) == Message(other, "for them again")


async def test_subscribers_share_one_upstream_subscription(broker: Broker, channel: str, admin: Redis | None) -> None:
    # given: many local subscribers on one channel
    async with contextlib.AsyncExitStack() as stack:
        subs = [await stack.enter_async_context(broker.subscribe(channel)) for _ in range(200)]

        # when
        await broker.publish(channel, "hello")

        # then: all get it, over one Redis subscription
        for sub in subs:
            assert await _next(sub) == Message(channel, "hello")
        assert broker.subscriber_count == 200
        if admin is not None:
            assert await _numsub(admin, channel) == 1


async def test_closed_subscriptions_free_everything(broker: Broker, channel: str, admin: Redis | None) -> None:
    # given: subscriptions that end every way one can end
    async def cancelled_while_waiting() -> None:
        async with broker.subscribe(channel) as sub:
            async for _ in sub:
                pass

    for i in range(30):
        async with broker.subscribe(channel) as sub:  # left after one message
            await broker.publish(channel, f"m{i}")
            async for _ in sub:
                break
        with pytest.raises(LookupError):
            async with broker.subscribe(channel):  # left by an exception
                raise LookupError(channel)
        task = asyncio.create_task(cancelled_while_waiting())
        await _eventually(lambda: broker.subscriber_count > 0, "the task subscribed")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    # then
    assert broker.subscriber_count == 0
    if admin is not None:
        await _eventually(lambda: _numsub_is(admin, channel, 0), f"PUBSUB NUMSUB {channel} is 0")
    await broker.publish(channel, "nobody listens")  # and nothing breaks


async def test_rejoining_a_channel_being_left_misses_nothing(broker: Broker, channel: str) -> None:
    # given: a channel whose last subscriber leaves as the next one joins,
    # so that UNSUBSCRIBE and SUBSCRIBE cross on the wire
    for i in range(30):
        async with broker.subscribe(channel):
            pass
        async with broker.subscribe(channel) as sub:
            # when
            await broker.publish(channel, f"m{i}")

            # then: the new subscription was live on entry
            assert await _next(sub) == Message(channel, f"m{i}")
    assert broker.subscriber_count == 0


async def test_concurrent_first_subscribers_are_all_live_on_entry(broker: Broker, channel: str) -> None:
    # given: several subscribers racing to be the first on a channel
    entered = asyncio.Event()
    ready: list[Subscription] = []

    async def join() -> Message | Gap:
        async with broker.subscribe(channel) as sub:
            ready.append(sub)
            if len(ready) == 5:
                entered.set()
            await entered.wait()
            return await _next(sub)

    tasks = [asyncio.create_task(join()) for _ in range(5)]
    await asyncio.wait_for(entered.wait(), PATIENCE)

    # when
    await broker.publish(channel, "hello")

    # then
    assert await asyncio.gather(*tasks) == [Message(channel, "hello")] * 5


async def test_slow_subscriber_overflows_while_fast_one_gets_everything(make_broker: MakeBroker, channel: str) -> None:
    # given
    broker = await make_broker(queue_size=5)

    async with broker.subscribe(channel) as slow, broker.subscribe(channel) as fast:
        # when: the fast one keeps up, the slow one never reads
        for i in range(20):
            await broker.publish(channel, f"m{i}")
            assert await _next(fast) == Message(channel, f"m{i}")

        # then: the slow one is cut off at once, its backlog dropped
        assert slow.overflowed
        with pytest.raises(SubscriberOverflow, match="more than 5 messages"):
            await _next(slow)
        with pytest.raises(SubscriberOverflow):
            await _next(slow)
        await broker.publish(channel, "after")
        assert await _next(fast) == Message(channel, "after")
    assert broker.subscriber_count == 0


async def test_iteration_ends_when_the_broker_disconnects(broker: Broker, channel: str) -> None:
    # given
    async with broker.subscribe(channel) as sub:
        await broker.publish(channel, "last")
        await _eventually(lambda: sub.pending == 1, "the message is queued")

        # when
        await broker.disconnect()

        # then: what was queued is delivered, then iteration stops
        assert [item async for item in sub] == [Message(channel, "last")]
    assert broker.subscriber_count == 0
    assert not broker.healthy
    assert not await broker.ping()


async def test_healthy_and_ping_when_connected(broker: Broker) -> None:
    assert broker.healthy
    assert await broker.ping()


async def test_unconnected_broker_refuses_to_work(url: str, channel: str) -> None:
    # given
    broker = Broker(url)

    # then
    with pytest.raises(RuntimeError, match="not connected"):
        await broker.publish(channel, "x")
    with pytest.raises(RuntimeError, match="not connected"):
        async with broker.subscribe(channel):
            pass
    assert not broker.healthy


# -- configuration ---------------------------------------------------------------


def test_unknown_url_scheme_is_named() -> None:
    with pytest.raises(ValueError, match="'kafka'"):
        Broker("kafka://127.0.0.1:9092")


async def test_a_bounded_queue_drops_everything_on_overflow_and_says_so_once_read() -> None:
    # given: a queue of two, with a reader waiting
    queue: BoundedQueue[int] = BoundedQueue(2, lambda: SubscriberOverflow("c", 2))
    reader = asyncio.ensure_future(queue.get())
    # when: an item arrives, then two more while nobody reads
    assert queue.put(1) is True
    assert await reader == 1
    kept = [queue.put(2), queue.put(3)]
    # then: the reader was woken for the first; the other two fit
    assert kept == [True, True]
    assert queue.pending == 2
    # when: one more arrives than fits
    assert queue.put(4) is False
    # then: what waited is freed at once, and every read says to resume
    assert queue.pending == 0
    assert queue.overflowed
    with pytest.raises(SubscriberOverflow):
        queue.get_nowait()
    with pytest.raises(SubscriberOverflow):
        await queue.get()
    assert queue.put(5) is False


async def test_a_closed_bounded_queue_is_drained_then_ends() -> None:
    # given: a queue with an item
    queue: BoundedQueue[str] = BoundedQueue(5, lambda: SubscriberOverflow("c", 5))
    queue.put("a")
    # when: it is closed
    queue.close()
    # then: the item is still read, later ones are refused, then iteration ends
    assert queue.put("b") is False
    assert [item async for item in queue] == ["a"]
    assert queue.get_nowait() is None


def test_queue_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="queue_size"):
        Broker("memory://", queue_size=0)


async def test_unreachable_redis_fails_fast_on_connect() -> None:
    # given: a port nobody listens on
    broker = Broker(f"redis://127.0.0.1:{_free_port()}/0")

    # when
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match="127.0.0.1"):
        await broker.connect()

    # then
    assert time.monotonic() - started < 5.0
    assert not broker.healthy


# -- a real Redis that goes away ------------------------------------------------------


async def test_outage_publish_fails_fast_and_subscribers_get_a_gap(redis_server: _RedisServer, channel: str) -> None:
    async with Broker(redis_server.url) as broker, broker.subscribe(channel) as sub:
        await broker.publish(channel, "before")
        assert await _next(sub) == Message(channel, "before")

        # when: Redis dies
        await redis_server.kill()

        # then: publishing fails promptly, and the listener knows
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable, match=channel):
            await broker.publish(channel, "lost")
        assert time.monotonic() - started < 5.0
        await _eventually(lambda: not broker.healthy, "healthy turns False")
        assert not await broker.ping()

        # and subscribing still works, and iterating simply waits
        async with broker.subscribe(f"{channel}:late") as late:
            with pytest.raises(TimeoutError):
                await _next(sub, within=0.2)

            # when: Redis is back on the same port
            await redis_server.start()

            # then: each subscriber hears of the gap, once live again
            assert await _next(sub) == Gap(channel)
            assert await _next(late) == Gap(f"{channel}:late")
            await _eventually(lambda: broker.healthy, "healthy turns True")
            assert await broker.ping()

            await broker.publish(channel, "after")
            await broker.publish(f"{channel}:late", "after, late")
            assert await _next(sub) == Message(channel, "after")
            assert await _next(late) == Message(f"{channel}:late", "after, late")


async def test_unresponsive_redis_is_detected_and_survived(redis_server: _RedisServer, channel: str) -> None:
    async with Broker(redis_server.url) as broker, broker.subscribe(channel) as sub:
        # when: Redis stops answering but keeps its connections open
        redis_server.pause()

        # then: publishing gives up after its socket timeout instead of hanging
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable, match=channel):
            await broker.publish(channel, "lost")
        assert time.monotonic() - started < 5.0

        # and the listener's PING finds out, where TCP alone would not for minutes
        await _eventually(lambda: not broker.healthy, "healthy turns False")

        # when
        redis_server.resume()

        # then
        assert await _next(sub) == Gap(channel)
        await _eventually(lambda: broker.healthy, "healthy turns True")
        await broker.publish(channel, "after")
        assert await _next(sub) == Message(channel, "after")


async def test_one_connection_to_publish_and_one_to_listen(redis_server: _RedisServer, channel: str) -> None:
    # given: a private server, so that every client on it is ours
    admin = Redis.from_url(redis_server.url, decode_responses=True)
    try:
        async with Broker(redis_server.url) as broker, contextlib.AsyncExitStack() as stack:
            subs = [await stack.enter_async_context(broker.subscribe(f"{channel}:{i % 5}")) for i in range(50)]

            # when
            await asyncio.gather(*(broker.publish(f"{channel}:{i % 5}", f"m{i}") for i in range(20)))
            for sub in subs:
                assert isinstance(await _next(sub), Message)

            # then: the broker's two connections, and the admin's own
            clients = await admin.client_list()
            assert len(clients) == 3, clients
    finally:
        await admin.aclose()


async def test_a_channel_prefix_keeps_deployments_that_share_a_redis_apart(url: str, channel: str) -> None:
    # given: two deployments on one transport, told apart by their prefixes
    async with (
        Broker(url, prefix="office-a:") as a,
        Broker(url, prefix="office-b:") as b,
        Broker(url, prefix="office-b:") as b_too,
    ):
        async with b.subscribe(channel) as sub, a.subscribe(channel) as own:
            # when: each publishes on the same channel name
            await a.publish(channel, "for a")
            await b_too.publish(channel, "for b")
            # then: each hears its own deployment only, under the name it subscribed to
            assert await _next(own) == Message(channel, "for a")
            if url.startswith("redis"):
                assert await _next(sub) == Message(channel, "for b")
            with pytest.raises(TimeoutError):
                await _next(sub, within=0.3)
            with pytest.raises(TimeoutError):
                await _next(own, within=0.3)
