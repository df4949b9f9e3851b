"""Migration 0004: complaints recorded as failures become deliveries, statuses recomputed."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import PG_HOST, PG_PORT, _pg_admin, make_settings
from sqlalchemy import select, text

from gateway import models
from gateway.config import Settings
from gateway.db import create_engine
from gateway.migrations import upgrade

T = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
async def fresh_database(backend: str, tmp_path: Path) -> AsyncIterator[Settings]:
    if backend.startswith("sqlite"):
        yield make_settings(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}", tmp_path / "data")
        return
    name = f"gateway_m0004_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    await _pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield make_settings(f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{name}", tmp_path / "data")
    finally:
        await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _at(minutes: int) -> datetime:
    return T + timedelta(minutes=minutes)


async def test_recorded_complaints_become_deliveries_and_statuses_are_recomputed(fresh_database: Settings) -> None:
    # given: at 0003, an e-mail failed by a complaint after delivery and open, and a purged one
    settings = fresh_database
    await asyncio.to_thread(upgrade, settings, "0003")
    engine = create_engine(settings)
    email_table, event_table = models.Email.__table__, models.EmailEvent.__table__  # type: ignore[attr-defined]
    common = {
        "tenant_id": 1,
        "subject": "s",
        "recipient": "r@example.com",
        "sent_at": T,
        "created_at": T,
        "failure_category": "SPAM_COMPLAINT",
        "failure_reason": "abuse",
        "status": "DELIVERY_FAILED",
    }
    try:
        async with engine.begin() as connection:
            await connection.execute(models.Tenant.__table__.insert().values(id=1, name="Office", created_at=T))  # type: ignore[attr-defined]
            await connection.execute(
                email_table.insert().values(
                    id=1,
                    tracking_id="t1",
                    status_changed_at=_at(10),
                    delivered_at=_at(1),
                    failure_occurred_at=_at(10),
                    open_count=1,
                    first_opened_at=_at(2),
                    last_opened_at=_at(2),
                    **common,
                )
            )
            await connection.execute(
                email_table.insert().values(
                    id=2,
                    tracking_id="t2",
                    status_changed_at=_at(30),
                    failure_occurred_at=_at(30),
                    history_purged_at=_at(60 * 24 * 40),
                    **common,
                )
            )
            rows = [
                ("d", "DELIVERED", 1, None),
                ("o", "OPENED", 2, None),
                ("c", "DELIVERY_FAILED", 10, "SPAM_COMPLAINT"),
            ]
            await connection.execute(
                event_table.insert(),
                [
                    {
                        "tenant_id": 1,
                        "email_id": 1,
                        "source": "sendgrid",
                        "event_key": key,
                        "status": status,
                        "occurred_at": _at(minute),
                        "received_at": _at(minute),
                        "description": "",
                        "failure_category": category,
                        "machine_open": False,
                    }
                    for key, status, minute, category in rows
                ],
            )
        # when
        await engine.dispose()
        await asyncio.to_thread(upgrade, settings)
        await engine.dispose()
        async with engine.connect() as connection:
            emails = {r.id: r for r in (await connection.execute(select(email_table).order_by(email_table.c.id))).all()}
            complaint = (
                await connection.execute(text("SELECT status FROM email_event WHERE event_key = 'c'"))
            ).scalar_one()
            changes = (
                await connection.execute(
                    text("SELECT email_id, previous_status, status FROM status_change ORDER BY email_id")
                )
            ).all()
    finally:
        await engine.dispose()
    # then: the complaint is a delivery in the history, and neither e-mail is failed
    assert complaint == "DELIVERED"
    first, purged = emails[1], emails[2]
    assert str(getattr(first.status, "value", first.status)) == "OPENED" and first.status_changed_at == _at(2)
    assert first.complained_at == _at(10) and first.failure_category is None
    assert str(getattr(purged.status, "value", purged.status)) == "DELIVERED"
    assert purged.complained_at == _at(30) and purged.delivered_at == _at(30) and purged.failure_category is None
    assert [(c.email_id, c.previous_status, c.status) for c in changes] == [
        (1, "DELIVERY_FAILED", "OPENED"),
        (2, "DELIVERY_FAILED", "DELIVERED"),
    ]
