"""The async engine and session factory, created inside the app's lifespan."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from aiodataloader import dispatch_queue
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from gateway.config import Settings

__all__ = ["RequestDb", "SessionFactory", "create_engine", "create_session_factory", "database_unavailable"]

_SETTLE_TICKS = 3

SessionFactory = async_sessionmaker[AsyncSession]
T = TypeVar("T")


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the one writer; foreign keys are off by default.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_engine(settings: Settings, **kwargs: Any) -> AsyncEngine:
    """An engine for the configured database; SQLite gets its folder, WAL and a busy timeout."""
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_pre_ping", False)
    return create_async_engine(url, **kwargs)


_UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeout, OSError, TimeoutError)
# SQLSTATEs of a server that cannot take the connection now: class 08 (connection
# exception), class 53 (insufficient resources: too many connections, out of memory,
# disk full), 57P01-57P03 (shut down, crashed, starting up: asyncpg's
# CannotConnectNowError is 57P03), and 3D000 (the database is not there, being
# restored). asyncpg raises them as plain PostgresErrors, which SQLAlchemy wraps as a
# generic DBAPIError.
_UNAVAILABLE_STATES = ("08", "53", "57P01", "57P02", "57P03", "3D000")


def _sqlstate(error: BaseException) -> str | None:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        state = getattr(current, "sqlstate", None)
        if isinstance(state, str) and state:
            return state
        current = getattr(current, "orig", None) or current.__cause__
    return None


def database_unavailable(error: BaseException) -> bool:
    """The database is down, unreachable or not taking connections now (retry later),
    as opposed to a bug or a refused statement."""
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, _UNAVAILABLE):
        return True
    state = _sqlstate(error)
    return state is not None and state.startswith(_UNAVAILABLE_STATES)


def create_session_factory(engine: AsyncEngine) -> SessionFactory:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


class RequestDb:
    """One request's database access: one session, used by one coroutine at a time.

    It also decides when DataLoaders dispatch. aiodataloader dispatches a batch on
    the next loop tick, so lookups that become known a few ticks apart (one root
    field's rows arrive while another's query is still running) would go out as
    separate statements. Here a loader with pending keys waits until no query of
    this request is running or waiting, then everything pending goes out at once:
    a request that spans several screens sends one statement per kind of lookup
    and level of nesting, whatever the page sizes.
    """

    def __init__(self, factory: SessionFactory) -> None:
        self._factory = factory
        self._session: AsyncSession | None = None
        self._lock = asyncio.Lock()
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._pending: list[Any] = []
        self._dispatcher: asyncio.Task[None] | None = None
        self._work: set[asyncio.Task[Any]] = set()
        self._closed = False

    async def run(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """`work(session)` on the request's session, alone, and always to its end.

        graphql-core cancels a failed field's siblings. A cancellation that lands
        inside a driver call (a connection being opened, a statement in flight)
        leaves that connection in an unknown state and its worker behind, so the
        work runs in its own task: a cancelled caller stops waiting, the work
        finishes, and `close` waits for it before closing the session.
        """
        if self._closed:
            raise RuntimeError("this request's database access is closed")
        self._busy += 1
        self._idle.clear()
        task = asyncio.get_running_loop().create_task(self._exclusive(work))
        self._work.add(task)
        task.add_done_callback(self._work.discard)
        try:
            return await asyncio.shield(task)
        finally:
            # Counted until the caller has the result: what it does next may queue keys.
            self._busy -= 1
            if not self._busy:
                self._idle.set()

    async def _exclusive(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        async with self._lock:
            if self._session is None:
                self._session = self._factory()
            return await work(self._session)

    def schedule(self, loader: Any) -> None:
        """Dispatch `loader`'s queued keys once the request's queries have settled."""
        self._pending.append(loader)
        if self._dispatcher is None:
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch())

    async def _settle(self) -> None:
        # A few ticks let every resolver of the current wave queue its keys.
        for _ in range(_SETTLE_TICKS):
            await asyncio.sleep(0)
        while self._busy:
            await self._idle.wait()
            for _ in range(_SETTLE_TICKS):
                await asyncio.sleep(0)

    async def _dispatch(self) -> None:
        try:
            while self._pending:
                await self._settle()
                loaders, self._pending = self._pending, []
                for loader in loaders:
                    dispatch_queue(loader)
        finally:
            self._dispatcher = None

    async def release(self) -> None:
        """Wait for the work still running (a cancelled caller's), then end the session.

        The next `run` opens a new one: a long-lived subscription releases its
        connection between changes instead of sitting idle in a transaction.
        """
        while self._work:
            await asyncio.gather(*self._work, return_exceptions=True)
        session, self._session = self._session, None
        if session is not None:
            # To its end even if the caller is cancelled (a subscriber leaving right
            # then): an interrupted close would leave the connection checked out.
            await asyncio.shield(asyncio.ensure_future(session.close()))

    async def close(self) -> None:
        """Release, and refuse any later work: the request is over."""
        self._closed = True
        await self.release()
