"""Change-log positions that are safe under concurrent writers: (txid, id).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # PostgreSQL: the id of the writing transaction, taken per row at insert time.
    # SQLite serializes writers, so ids alone are in commit order: txid stays 0.
    if op.get_bind().dialect.name == "postgresql":
        default = sa.text("(pg_current_xact_id()::text)::bigint")
    else:
        default = sa.text("0")
    with op.batch_alter_table("status_change", schema=None) as batch_op:
        batch_op.add_column(sa.Column("txid", sa.BigInteger(), nullable=False, server_default=default))
        batch_op.create_index("ix_status_change_position", ["txid", "id"], unique=False)
        batch_op.create_index("ix_status_change_tenant_position", ["tenant_id", "txid", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("status_change", schema=None) as batch_op:
        batch_op.drop_index("ix_status_change_tenant_position")
        batch_op.drop_index("ix_status_change_position")
        batch_op.drop_column("txid")
