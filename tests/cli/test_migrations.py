"""The Alembic migrations build exactly the tables the models describe, and go down and up again.

Runs on both backends through the shared `backend` fixture (a database migrated to head).
The round trip through `downgrade base` uses a database of its own: the shared one stays put.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from conftest import PG_HOST, PG_PORT, make_settings
from sqlalchemy import Column, Index, Integer, MetaData, inspect, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

from gateway import models
from gateway.config import Settings
from gateway.db import create_engine
from gateway.migrations import alembic_config, upgrade


def _head(settings: Settings) -> str:
    heads = ScriptDirectory.from_config(alembic_config(settings)).get_heads()
    assert len(heads) == 1, f"the migrations branch: heads {heads}"
    return heads[0]


def _compare(connection: Connection, metadata: MetaData) -> tuple[str | None, list[Any]]:
    """The database's revision and Alembic's autogenerate diff between it and `metadata`."""
    context = MigrationContext.configure(
        connection=connection,
        opts={"compare_type": True, "compare_server_default": True, "target_metadata": metadata},
    )
    diffs = compare_metadata(context, metadata)
    # No difference is ignored: on both SQLite and PostgreSQL the migrated schema
    # compares clean (types, nullability, server defaults, indexes, unique and
    # foreign keys). Alembic already leaves its own alembic_version table out.
    return context.get_current_revision(), diffs


async def _compare_async(engine: AsyncEngine, metadata: MetaData) -> tuple[str | None, list[Any]]:
    async with engine.connect() as connection:
        return await connection.run_sync(_compare, metadata)


async def _tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        return set(await connection.run_sync(lambda c: inspect(c).get_table_names()))


def test_the_migrations_form_one_line_from_one_base_to_one_head(tmp_path: Path) -> None:
    # given
    script = ScriptDirectory.from_config(alembic_config(Settings(data_dir=tmp_path)))
    # when
    revisions = list(script.walk_revisions())
    # then
    assert len(script.get_heads()) == 1, script.get_heads()
    assert len(script.get_bases()) == 1, script.get_bases()
    assert len({r.revision for r in revisions}) == len(revisions)
    assert sum(1 for r in revisions if r.down_revision is None) == 1


async def test_the_migrated_database_matches_the_models(settings: Settings, engine: AsyncEngine) -> None:
    # given: the shared database, brought to head again (a no-op when it already is)
    await asyncio.to_thread(upgrade, settings)
    # when
    revision, diffs = await _compare_async(engine, SQLModel.metadata)
    # then
    assert revision == _head(settings)
    assert diffs == []


async def test_the_comparison_sees_what_the_migrations_lack(engine: AsyncEngine) -> None:
    # given: the models plus a column and an index no migration creates
    metadata = MetaData()
    for table in SQLModel.metadata.tables.values():
        table.to_metadata(metadata)
    tenant = metadata.tables[models.Tenant.__tablename__]
    tenant.append_column(Column("not_migrated", Integer, nullable=True))
    Index("ix_tenant_not_migrated", tenant.c.not_migrated)
    # when
    _, diffs = await _compare_async(engine, metadata)
    # then: the test above would notice a model change that lacks its migration
    added_columns = [(d[2], d[3].name) for d in diffs if d[0] == "add_column"]
    added_indexes = [d[1].name for d in diffs if d[0] == "add_index"]
    assert added_columns == [("tenant", "not_migrated")]
    assert added_indexes == ["ix_tenant_not_migrated"]
    assert len(diffs) == 2


async def _admin(sql: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user="postgres", database="postgres")
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture
async def own_database(backend: str, tmp_path: Path) -> AsyncIterator[Settings]:
    """Settings for a fresh, empty database of the backend's kind, dropped afterwards."""
    if backend.startswith("sqlite"):
        yield make_settings(f"sqlite+aiosqlite:///{tmp_path / 'round-trip.db'}", tmp_path / "data")
        return
    name = f"gateway_migrations_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    await _admin(f'CREATE DATABASE "{name}"')
    try:
        url = f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{name}"
        yield make_settings(url, tmp_path / "data")
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_downgrade_to_base_then_upgrade_to_head(own_database: Settings) -> None:
    # given: a database at head holding a tenant and its key
    settings = own_database
    await asyncio.to_thread(upgrade, settings)
    engine = create_engine(settings)
    try:
        async with engine.begin() as connection:
            tenant, key = models.Tenant.__table__, models.ApiKey.__table__  # type: ignore[attr-defined]
            inserted = await connection.execute(
                tenant.insert().values(name="Bakkerij Smit", created_at=models.utcnow())
            )
            await connection.execute(
                key.insert().values(
                    tenant_id=inserted.inserted_primary_key[0],
                    prefix="gw_abc",
                    key_hash="0" * 64,
                    scopes="read",
                    created_at=models.utcnow(),
                )
            )
        # when
        await asyncio.to_thread(command.downgrade, alembic_config(settings), "base")
        await engine.dispose()  # PostgreSQL: drop cached type and statement information
        after_downgrade = await _tables(engine)
        revision_at_base, _ = await _compare_async(engine, MetaData())
        await asyncio.to_thread(upgrade, settings)
        await engine.dispose()
        after_upgrade = await _tables(engine)
        revision, diffs = await _compare_async(engine, SQLModel.metadata)
        async with engine.connect() as connection:
            tenants = (await connection.execute(select(models.Tenant.name))).all()  # type: ignore[call-overload]
    finally:
        await engine.dispose()
    # then
    assert after_downgrade == {"alembic_version"}
    assert revision_at_base is None
    assert after_upgrade == set(SQLModel.metadata.tables) | {"alembic_version"}
    assert revision == _head(settings)
    assert diffs == []
    assert tenants == []  # the round trip starts the data over


async def test_every_migration_goes_down_and_up_again_one_step_at_a_time(
    own_database: Settings,
) -> None:
    # given: the revisions from the first to the head
    settings = own_database
    config = alembic_config(settings)
    script = ScriptDirectory.from_config(config)
    steps = [r.revision for r in reversed(list(script.walk_revisions()))]
    engine = create_engine(settings)
    seen: list[tuple[str, str | None, str | None]] = []
    try:
        for revision in steps:
            # when: up to this revision, one step down, and up again
            await asyncio.to_thread(command.upgrade, config, revision)
            await asyncio.to_thread(command.downgrade, config, "-1")
            await engine.dispose()
            below, _ = await _compare_async(engine, MetaData())
            await asyncio.to_thread(command.upgrade, config, revision)
            await engine.dispose()
            now, _ = await _compare_async(engine, MetaData())
            seen.append((revision, below, now))
        await engine.dispose()
        _, diffs = await _compare_async(engine, SQLModel.metadata)
    finally:
        await engine.dispose()
    # then: each step lands where it should, and the stairway ends at the models
    expected = [(r, script.get_revision(r).down_revision, r) for r in steps]  # type: ignore[union-attr]
    assert seen == expected
    assert seen[-1][0] == _head(settings)
    assert diffs == []
