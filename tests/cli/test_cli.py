"""The `gateway` command, run for real in a subprocess, on SQLite and on PostgreSQL.

These tests never use the shared `backend` database: each one gets fresh databases
(an SQLite file under tmp_path, or a PostgreSQL database created here and dropped
afterwards), because the commands under test create tables, tenants and data.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from conftest import PG_HOST, PG_PORT, make_settings, need_server
from sqlalchemy import func, inspect, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel

from gateway import models
from gateway.demo import DEMO_TENANTS
from gateway.enums import EmailStatus, Scope
from gateway.repositories.api_keys import get_principal
from gateway.schema import sdl

T = TypeVar("T")
MODEL_TABLES = set(SQLModel.metadata.tables)


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stdout.strip().splitlines()


def base_env(tmp_path: Path, **variables: str) -> dict[str, str]:
    """The caller's environment without any GATEWAY_* setting, plus the data dir and `variables`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_DATA_DIR"] = str(tmp_path / "data")
    env.update(variables)
    return env


async def gateway(*args: str, cwd: Path, env: dict[str, str]) -> Run:
    """Run `python -m gateway.cli ARGS` to completion (in a thread: the event loop stays free)."""
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gateway.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return Run(done.returncode, done.stdout, done.stderr)


async def _pg(sql: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user="postgres", database="postgres")
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@dataclass(frozen=True)
class Database:
    """One fresh, empty database: its async URL for the test, and the env the command runs with."""

    url: str
    env: dict[str, str]
    probe_dir: Path

    async def read(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        from gateway.db import create_engine, create_session_factory

        engine = create_engine(make_settings(self.url, self.probe_dir))
        try:
            async with create_session_factory(engine)() as session:
                return await work(session)
        finally:
            await engine.dispose()

    async def tables(self) -> set[str]:
        from gateway.db import create_engine

        engine = create_engine(make_settings(self.url, self.probe_dir))
        try:
            async with engine.connect() as connection:
                return set(await connection.run_sync(lambda c: inspect(c).get_table_names()))
        finally:
            await engine.dispose()


class Databases:
    """Hands out fresh databases of one kind; PostgreSQL ones are dropped at teardown."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.tmp_path = tmp_path
        self._created: list[str] = []

    async def new(self) -> Database:
        n = len(self._created) + 1
        probe = self.tmp_path / f"probe-{n}"
        if self.kind == "sqlite":
            self._created.append(f"sqlite-{n}")
            if n == 1:  # the default: no URL, a file in the data dir
                path = self.tmp_path / "data" / "gateway.db"
                return Database(f"sqlite+aiosqlite:///{path}", base_env(self.tmp_path), probe)
            path = self.tmp_path / f"fresh-{n}.db"
            env = base_env(self.tmp_path, GATEWAY_DATABASE_URL=f"sqlite:///{path}")
            return Database(f"sqlite+aiosqlite:///{path}", env, probe)
        name = f"gateway_cli_{os.getpid()}_{uuid.uuid4().hex[:10]}"
        await _pg(f'CREATE DATABASE "{name}"')
        self._created.append(name)
        # The plain postgresql:// scheme, as operators write it: the settings add the driver.
        env = base_env(self.tmp_path, GATEWAY_DATABASE_URL=f"postgresql://postgres@{PG_HOST}:{PG_PORT}/{name}")
        return Database(f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{name}", env, probe)

    async def drop_all(self) -> None:
        if self.kind == "postgresql":
            for name in self._created:
                await _pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
async def databases(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Databases]:
    if request.param == "postgresql":
        need_server("PostgreSQL", PG_HOST, PG_PORT)
    found = Databases(request.param, tmp_path)
    yield found
    await found.drop_all()


# --- help -------------------------------------------------------------------------------------

SUBCOMMANDS = {
    "serve": ["--host", "--port"],
    "migrate": [],
    "seed-demo": ["--emails", "--seed"],
    "create-api-key": ["--tenant", "--scopes"],
    "list-api-keys": ["--tenant"],
    "revoke-api-key": ["PREFIX"],
    "rotate-api-key": ["PREFIX", "--grace-hours"],
    "purge-history": ["--days", "--batch-size"],
    "export-schema": ["--output", "-o"],
}


async def test_top_level_help_lists_every_subcommand(tmp_path: Path) -> None:
    # given
    env = base_env(tmp_path)
    # when
    run = await gateway("--help", cwd=tmp_path, env=env)
    # then
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("usage: gateway")
    for name in SUBCOMMANDS:
        assert name in run.stdout
    assert not (tmp_path / "data").exists()  # help touches no database


@pytest.mark.parametrize(("command", "options"), list(SUBCOMMANDS.items()))
async def test_subcommand_help_mentions_its_options(tmp_path: Path, command: str, options: list[str]) -> None:
    # given
    env = base_env(tmp_path)
    # when
    run = await gateway(command, "--help", cwd=tmp_path, env=env)
    # then
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"usage: gateway {command}")
    for option in options:
        assert option in run.stdout
    assert not (tmp_path / "data").exists()


async def test_no_subcommand_is_a_usage_error(tmp_path: Path) -> None:
    # given
    env = base_env(tmp_path)
    # when
    run = await gateway(cwd=tmp_path, env=env)
    # then
    assert run.returncode != 0
    assert "usage: gateway" in run.stderr


# --- migrate ----------------------------------------------------------------------------------


async def test_migrate_creates_the_tables_and_is_idempotent(databases: Databases, tmp_path: Path) -> None:
    # given
    db = await databases.new()
    assert not (await db.tables()) & MODEL_TABLES
    # when
    first = await gateway("migrate", cwd=tmp_path, env=db.env)

    async def add_tenant(session: AsyncSession) -> None:
        session.add(models.Tenant(name="Kept across migrations"))
        await session.commit()

    await db.read(add_tenant)
    second = await gateway("migrate", cwd=tmp_path, env=db.env)
    # then
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert "database is up to date" in first.stdout
    assert "database is up to date" in second.stdout
    assert await db.tables() == MODEL_TABLES | {"alembic_version"}

    async def tenant_names(session: AsyncSession) -> list[str]:
        return list((await session.execute(select(models.Tenant.name))).scalars())

    assert await db.read(tenant_names) == ["Kept across migrations"]


# --- create-api-key ---------------------------------------------------------------------------


async def test_create_api_key_prints_a_working_key_and_reuses_the_tenant(databases: Databases, tmp_path: Path) -> None:
    # given
    db = await databases.new()
    # when
    create = ("create-api-key", "--tenant")
    first = await gateway(*create, "Bakkerij Smit", cwd=tmp_path, env=db.env)
    read_only = await gateway(*create, "Bakkerij Smit", "--scopes", "read", cwd=tmp_path, env=db.env)
    other = await gateway(*create, "Garage Jansen", cwd=tmp_path, env=db.env)
    # then: each run prints its key alone on the last line, and only there
    runs = [first, read_only, other]
    for run in runs:
        assert run.returncode == 0, run.stderr
        key = run.lines[-1]
        assert key.startswith("gw_")
        assert key == key.strip()
        assert " " not in key
        assert len(key) > 40
        assert key not in "\n".join(run.lines[:-1])
    keys = [run.lines[-1] for run in runs]
    assert len(set(keys)) == 3

    async def check(session: AsyncSession) -> tuple[Any, ...]:
        rows = await session.execute(select(models.Tenant.name, models.Tenant.id))
        tenants = {name: id_ for name, id_ in rows}  # noqa: C416  (rows unpack to pairs)
        principals = [await get_principal(session=session, raw_key=key) for key in keys]
        forged = keys[0][:-1] + ("A" if keys[0][-1] != "A" else "B")
        tampered = await get_principal(session=session, raw_key=forged)
        return tenants, principals, tampered

    tenants, principals, tampered = await db.read(check)
    # one tenant per name: created when new, reused otherwise
    assert set(tenants) == {"Bakkerij Smit", "Garage Jansen"}
    smit, jansen = tenants["Bakkerij Smit"], tenants["Garage Jansen"]
    full, read, other_tenant = principals
    assert full is not None
    assert read is not None
    assert other_tenant is not None
    both = frozenset({Scope.READ, Scope.WRITE})
    assert (full.tenant_id, full.scopes) == (smit, both)
    assert (read.tenant_id, read.scopes) == (smit, frozenset({Scope.READ}))
    assert not read.can(Scope.WRITE)
    assert (other_tenant.tenant_id, other_tenant.scopes) == (jansen, both)
    assert tampered is None


@pytest.mark.parametrize("scopes", ["bogus", "read,bogus"])
async def test_create_api_key_refuses_unknown_scopes(tmp_path: Path, scopes: str) -> None:
    # given
    env = base_env(tmp_path)
    # when
    run = await gateway("create-api-key", "--tenant", "Bakkerij Smit", "--scopes", scopes, cwd=tmp_path, env=env)
    # then
    assert run.returncode != 0
    assert "bogus" in run.stderr
    assert "gw_" not in run.stdout
    assert not (tmp_path / "data").exists()  # refused before touching any database


# --- seed-demo --------------------------------------------------------------------------------


async def _demo_rows(session: AsyncSession) -> list[tuple[Any, ...]]:
    rows = await session.execute(
        select(
            models.Email.external_id,
            models.Tenant.name,
            models.Email.subject,
            models.Email.status,
            models.Email.failure_category,
            models.Email.failure_reason,
        )
        .join(models.Tenant, models.Tenant.id == models.Email.tenant_id)
        .order_by(models.Email.external_id)
    )
    return [tuple(row) for row in rows]


async def _count_events(session: AsyncSession) -> int:
    count = select(func.count()).select_from(models.EmailEvent)
    return int((await session.execute(count)).scalar_one())


async def test_seed_demo_writes_a_varied_deterministic_data_set_once(databases: Databases, tmp_path: Path) -> None:
    # (one test for both promises: each seeding run is a subprocess, and the budget is tight)
    # given
    db, same_seed, other_seed = await databases.new(), await databases.new(), await databases.new()
    seed = ("seed-demo", "--emails", "60", "--seed")
    # when
    first, twin, other = await asyncio.gather(  # three separate databases: the runs may overlap
        gateway(*seed, "3", cwd=tmp_path, env=db.env),
        gateway(*seed, "3", cwd=tmp_path, env=same_seed.env),
        gateway(*seed, "4", cwd=tmp_path, env=other_seed.env),
    )
    rows = await db.read(_demo_rows)
    events = await db.read(_count_events)
    second = await gateway(*seed, "3", cwd=tmp_path, env=db.env)
    # then: 60 e-mails over both demo tenants, every status, failures with their reason
    for run in (first, twin, other):
        assert run.returncode == 0, run.stderr
        assert "seeded 60 e-mails" in run.stdout
    assert len(rows) == 60
    assert {tenant for _, tenant, *_ in rows} == set(DEMO_TENANTS)
    assert {status for *_, status, _category, _reason in rows} == set(EmailStatus)
    failed = [row for row in rows if row[3] == EmailStatus.DELIVERY_FAILED]
    assert failed
    assert all(category is not None and reason for *_, category, reason in failed)
    assert events > 0
    # a second run writes nothing and changes nothing
    assert second.returncode == 0, second.stderr
    assert "nothing written" in second.stdout
    assert await db.read(_demo_rows) == rows
    assert await db.read(_count_events) == events
    # the same seed gives the same data in a fresh database; another seed does not
    assert await same_seed.read(_demo_rows) == rows
    assert [row[2:4] for row in await other_seed.read(_demo_rows)] != [row[2:4] for row in rows]


# --- export-schema ----------------------------------------------------------------------------


async def test_export_schema_writes_exactly_the_sdl(tmp_path: Path) -> None:
    # given
    env = base_env(tmp_path)
    target = tmp_path / "out" / "schema.graphql"
    target.parent.mkdir()
    # when
    to_file, to_stdout = await asyncio.gather(
        gateway("export-schema", "-o", str(target), cwd=tmp_path, env=env),
        gateway("export-schema", "--output", "-", cwd=tmp_path, env=env),
    )
    # then
    expected = sdl()
    assert to_file.returncode == 0, to_file.stderr
    assert target.read_text() == expected
    assert str(target) in to_file.stdout
    assert to_stdout.returncode == 0, to_stdout.stderr
    assert to_stdout.stdout == expected
    assert "type Query" in expected


# --- bad settings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GATEWAY_DATABASE_URL", "mysql://x"),
        ("GATEWAY_MAX_PAGE_SIZE", "-3"),
        ("GATEWAY_SECRET_KEY", "changeme"),
    ],
)
async def test_migrate_refuses_a_bad_setting_naming_it(tmp_path: Path, variable: str, value: str) -> None:
    # given
    env = base_env(tmp_path, **{variable: value})
    # when
    run = await gateway("migrate", cwd=tmp_path, env=env)
    # then
    assert run.returncode != 0
    assert variable in run.stderr
    assert "Traceback" not in run.stderr
    assert "up to date" not in run.stdout
    assert not (tmp_path / "data").exists()  # no database was created


def _closed_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    "command",
    [("migrate",), ("list-api-keys",), ("revoke-api-key", "gw_abcdefg..."), ("purge-history",)],
)
async def test_a_database_that_cannot_be_reached_is_one_line_naming_it(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    # given: PostgreSQL on a port where nothing listens, with a password
    port = _closed_port()
    env = base_env(tmp_path, GATEWAY_DATABASE_URL=f"postgresql://gateway:s3cr3t-pw@127.0.0.1:{port}/gateway")
    # when
    run = await gateway(*command, cwd=tmp_path, env=env)
    # then: one line that names the URL, its password hidden, and why
    assert run.returncode != 0
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert f"postgresql+asyncpg://gateway:***@127.0.0.1:{port}/gateway" in lines[0]
    assert "cannot reach the database" in lines[0]
    assert "refused" in lines[0].lower() or "connect call failed" in lines[0].lower()
    assert "s3cr3t-pw" not in run.stderr + run.stdout
    assert run.stdout == ""


async def test_serve_tunes_the_collector_once_the_app_is_up(settings) -> None:  # type: ignore[no-untyped-def]
    import gc

    from asgi_lifespan import LifespanManager

    from gateway.app import create_app
    from gateway.cli import GC_THRESHOLD, _tuned_gc

    before = gc.get_threshold()
    try:
        app = _tuned_gc(create_app(settings))
        assert gc.get_freeze_count() == 0 and gc.get_threshold() == before  # nothing before start-up
        async with LifespanManager(app):
            # what start-up made is out of every later collection; young passes are rarer
            assert gc.get_freeze_count() > 0
            assert gc.get_threshold()[0] == GC_THRESHOLD
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
