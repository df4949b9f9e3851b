"""Shared fixtures. Every database test runs on SQLite and on PostgreSQL.

The backend is a session-scoped parameter: `--backends sqlite,postgresql` (the
default) runs each database test once per backend. PostgreSQL is the real server
on 127.0.0.1:5432; when it is not there the PostgreSQL half is skipped with the
reason, except under CI=true, where it fails.

Tests do not run inside a rolled-back transaction: the code under test commits
(the ingestion path's promise is about commits), so each test starts from empty
tables instead.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import factories
import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.app import create_app
from gateway.config import Settings
from gateway.context import Context
from gateway.db import SessionFactory, create_engine, create_session_factory
from gateway.migrations import upgrade
from gateway.pubsub import Broker
from gateway.repositories.api_keys import Principal
from gateway.schema import build_schema

IN_CI = os.environ.get("CI", "").lower() == "true"
PG_HOST, PG_PORT = "127.0.0.1", 5432
TABLES = [
    "status_change",
    "email_event",
    "email_document",
    "email",
    "document",
    "invoice",
    "pending_event",
    "webhook_nonce",
    "relation",
    "api_key",
    "tenant",
    "trusted_document",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backends",
        default=os.environ.get("GATEWAY_TEST_BACKENDS", "sqlite,postgresql"),
        help="comma-separated database backends to run the database tests on",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        backends = [b.strip() for b in metafunc.config.getoption("--backends").split(",") if b.strip()]
        metafunc.parametrize("backend", backends, indirect=True, scope="session")


def server_reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def need_server(name: str, host: str, port: int) -> None:
    """Skip (or, under CI, fail) when a server the test needs is not listening."""
    if server_reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: servers are required)")
    pytest.skip(message)


async def _pg_admin(sql: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user="postgres", database="postgres")
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The database URL of this backend, migrated to head with Alembic."""
    name = request.param
    if name == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sqlite') / 'gateway.db'}"
        upgrade(Settings(database_url=url, data_dir=tmp_path_factory.mktemp("data")))
        yield url
        return
    if name != "postgresql":
        raise pytest.UsageError(f"unknown backend {name!r}")
    need_server("PostgreSQL", PG_HOST, PG_PORT)
    database = f"gateway_test_{os.getpid()}"
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{database}"'))
    asyncio.run(_pg_admin(f'CREATE DATABASE "{database}"'))
    url = f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{database}"
    upgrade(Settings(database_url=url, data_dir=tmp_path_factory.mktemp("data")))
    yield url
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


@pytest.fixture(autouse=True)
def _numbering_from_one() -> None:
    """Factory data is numbered from 1 in every test, run alone or after others."""
    factories.restart_numbering()


def make_settings(database_url: str, data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "data_dir": data_dir,
        "secret_key": "test-secret-key-that-is-long-enough-0123456789",
        "public_url": "https://gateway.example.test",
        "broker_url": "memory://",
        "purge_interval_seconds": 0,  # tests that want the purge run it themselves
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def settings(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(backend, tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings)
    yield engine
    await engine.dispose()


async def _empty_tables(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
        else:
            for table in TABLES:
                await connection.execute(text(f"DELETE FROM {table}"))  # noqa: S608  (fixed names)


@pytest.fixture
async def session_factory(engine: AsyncEngine) -> SessionFactory:
    await _empty_tables(engine)
    return create_session_factory(engine)


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    async with Broker("memory://") as broker:
        yield broker


@pytest.fixture
def schema(settings: Settings):  # type: ignore[no-untyped-def]
    return build_schema(settings)


@pytest.fixture
async def make_context(settings: Settings, session_factory: SessionFactory, broker: Broker):  # type: ignore[no-untyped-def]
    """`make_context(principal)`: a real Context with fresh loaders, as a request gets."""
    contexts: list[Context] = []

    def make(principal: Principal) -> Context:
        context = Context(
            settings=settings,
            session_factory=session_factory,
            broker=broker,
            feed=None,
            signing_key=settings.signing_key(),
            principal=principal,
        )
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        await context.close()


@pytest.fixture
async def client(settings: Settings, session_factory: SessionFactory) -> AsyncIterator[AsyncClient]:
    """An HTTP client on the real app, lifespan included, in the test's event loop."""
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        async with AsyncClient(transport=ASGITransport(app=manager.app), base_url="http://testserver") as c:
            yield c


class StatementCounter:
    """Counts the SQL statements an engine sends (every cursor execution)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.statements: list[str] = []

    def _record(self, _conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        self.statements.append(statement)

    def __enter__(self) -> StatementCounter:
        event.listen(self.engine.sync_engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *_exc: object) -> None:
        event.remove(self.engine.sync_engine, "before_cursor_execute", self._record)

    @property
    def count(self) -> int:
        return len(self.statements)


@pytest.fixture
def count_statements(engine: AsyncEngine) -> StatementCounter:
    return StatementCounter(engine)
