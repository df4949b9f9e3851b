"""Applying Alembic migrations from code (the CLI, `serve` at start, the tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from gateway.config import Settings

__all__ = ["alembic_config", "upgrade"]

_ROOT = Path(__file__).resolve().parent.parent


def alembic_config(settings: Settings) -> Config:
    config = Config(str(_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(_ROOT / "alembic"))
    config.attributes["settings"] = settings
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Bring the database to `revision`. Synchronous: call it outside an event loop."""
    command.upgrade(alembic_config(settings), revision)
