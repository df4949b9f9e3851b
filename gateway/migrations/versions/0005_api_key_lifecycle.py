"""API-key lifecycle: an expiry (rotation's grace period), the last use, a prefix index.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import gateway.models

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Batch mode: SQLite cannot drop these columns again in place (downgrade).
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expires_at", gateway.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("last_used_at", gateway.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_api_key_prefix", ["prefix"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.drop_index("ix_api_key_prefix")
        batch_op.drop_column("last_used_at")
        batch_op.drop_column("expires_at")
