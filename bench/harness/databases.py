"""Benchmark databases: a fresh PostgreSQL database on 127.0.0.1:5432 (user postgres,
trust) or a SQLite file, created, used and dropped; plus the few admin statements the
scripts need (ANALYZE, a setting)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "PG_HOST",
    "PG_PORT",
    "PG_USER",
    "Database",
    "analyze",
    "drop",
    "fresh_database",
    "pg_fetch",
    "pg_setting",
    "pg_url",
]

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"


def pg_url(database: str, driver: str = "postgresql+asyncpg") -> str:
    """The database's URL: SQLAlchemy's form by default, `driver="postgresql"` for libpq/asyncpg/node."""
    return f"{driver}://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"


async def _fetch(database: str, sql: str, *args: Any) -> list[Any]:
    import asyncpg

    connection = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database=database)
    try:
        return list(await connection.fetch(sql, *args))
    finally:
        await connection.close()


def pg_fetch(database: str, sql: str, *args: Any) -> list[Any]:
    """Rows of one statement on its own connection (admin work, outside any timing)."""
    return asyncio.run(_fetch(database, sql, *args))


def pg_setting(name: str) -> str:
    return str(pg_fetch("postgres", f"SHOW {name}")[0][0])


def analyze(database: str) -> None:
    """What autovacuum's auto-analyze does on a production server (it is off on this
    machine's): without statistics the planner picks bad plans."""
    pg_fetch(database, "ANALYZE")


def drop(database: str) -> None:
    pg_fetch("postgres", f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@dataclass(frozen=True, slots=True)
class Database:
    url: str  # SQLAlchemy URL, as GATEWAY_DATABASE_URL takes it
    name: str | None  # the PostgreSQL database, None for SQLite

    @property
    def kind(self) -> str:
        return "sqlite" if self.name is None else "postgresql"


@contextlib.contextmanager
def fresh_database(kind: str, workdir: Path, name: str) -> Iterator[Database]:
    """An empty database: a SQLite file in `workdir`, or the PostgreSQL database `name`
    (made anew), dropped afterwards even after an error."""
    if kind == "sqlite":
        yield Database(f"sqlite+aiosqlite:///{workdir / 'bench.db'}", None)
        return
    if kind != "postgresql":
        raise ValueError(f"no database kind {kind!r}: sqlite or postgresql")
    drop(name)
    pg_fetch("postgres", f'CREATE DATABASE "{name}"')
    try:
        yield Database(pg_url(name), name)
    finally:
        try:
            drop(name)
        except Exception as error:  # report, but do not hide the run's own outcome
            print(f"  could not drop database {name}: {error}", file=sys.stderr)
