"""Applying Alembic migrations from code (the CLI, `serve` at start, the tests).

The migration scripts (env.py, script.py.mako, versions/) live in this package, so
they travel in the wheel: an installed gateway migrates with no repository at hand.
The repository's alembic.ini names the same place, for the `alembic` command.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from gateway.config import Settings

__all__ = ["SCRIPT_LOCATION", "alembic_config", "upgrade"]

# This package's own folder, wherever it is installed: a plain path works the same from
# a wheel, an editable install and a checkout, with no package-resource machinery.
SCRIPT_LOCATION = str(Path(__file__).resolve().parent)


def alembic_config(settings: Settings) -> Config:
    """An Alembic configuration for `settings`' database; no alembic.ini is read.

    env.py takes the settings from `config.attributes`, so the URL given here wins
    over the environment's.
    """
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["settings"] = settings
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Bring the database to `revision`. Synchronous: call it outside an event loop."""
    command.upgrade(alembic_config(settings), revision)
