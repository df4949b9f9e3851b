"""Why a pending event waits; spam complaints recorded as what they are.

A spam complaint proves the message reached the recipient: it is no delivery
failure (DESIGN.md, "Last known status"). Events recorded as complaints become
deliveries with the SPAM_COMPLAINT category, the e-mail keeps the time of the
first complaint (`complained_at`, which outlives the history purge), and every
affected e-mail gets its status recomputed by the projection, with a change-log
row when its status changes. An e-mail whose history was purged is recomputed
from its summary, whose latest failure was the complaint.

The recomputation uses the gateway's own projection (`gateway.status`): the
rule is written once. The data fix is not undone by the downgrade.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 10:00:00
"""

from collections.abc import Sequence
from enum import Enum
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from alembic import op

from gateway.enums import EmailStatus, FailureCategory
from gateway.models import UTCDateTime, utcnow

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COMPLAINT = FailureCategory.SPAM_COMPLAINT.value
_BATCH = 500

# The tables as this revision knows them (not the models, which move on).
_event = sa.table(
    "email_event",
    sa.column("email_id", sa.Integer),
    sa.column("source", sa.String),
    sa.column("event_key", sa.String),
    sa.column("status", sa.String),
    sa.column("occurred_at", UTCDateTime()),
    sa.column("failure_category", sa.String),
    sa.column("reason", sa.String),
    sa.column("smtp_code", sa.Integer),
    sa.column("machine_open", sa.Boolean),
)
_SUMMARY: dict[str, sa.types.TypeEngine[Any] | type[sa.types.TypeEngine[Any]]] = {
    "status": sa.String,
    "status_changed_at": UTCDateTime(),
    "delivered_at": UTCDateTime(),
    "failure_category": sa.String,
    "failure_reason": sa.String,
    "failure_smtp_code": sa.Integer,
    "failure_occurred_at": UTCDateTime(),
    "open_count": sa.Integer,
    "first_opened_at": UTCDateTime(),
    "last_opened_at": UTCDateTime(),
    "opens_likely_automated": sa.Boolean,
    "complained_at": UTCDateTime(),
}
_email = sa.table(
    "email",
    sa.column("id", sa.Integer),
    sa.column("tenant_id", sa.Integer),
    sa.column("sent_at", UTCDateTime()),
    sa.column("history_purged_at", UTCDateTime()),
    *(sa.column(name, kind) for name, kind in _SUMMARY.items()),
)
_change = sa.table(
    "status_change",
    sa.column("tenant_id", sa.Integer),
    sa.column("email_id", sa.Integer),
    sa.column("previous_status", sa.String),
    sa.column("status", sa.String),
    sa.column("changed_at", UTCDateTime()),
    sa.column("recorded_at", UTCDateTime()),
)


def upgrade() -> None:
    with op.batch_alter_table("pending_event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reason", sa.String(length=200), nullable=True))
    with op.batch_alter_table("email", schema=None) as batch_op:
        batch_op.add_column(sa.Column("complained_at", UTCDateTime(timezone=True), nullable=True))
    _complaints_are_deliveries(op.get_bind())


def downgrade() -> None:
    with op.batch_alter_table("email", schema=None) as batch_op:
        batch_op.drop_column("complained_at")
    with op.batch_alter_table("pending_event", schema=None) as batch_op:
        batch_op.drop_column("reason")


def _enum(row: Any, name: str, kind: type[Enum]) -> Any:
    value = getattr(row, name)
    return kind(value) if value is not None else None


def _complaints_are_deliveries(bind: sa.Connection) -> None:
    from gateway.ingest import _projection_values, baseline_facts, fact_of
    from gateway.status import project

    bind.execute(
        _event.update()
        .where(_event.c.failure_category == _COMPLAINT, _event.c.status != EmailStatus.OPENED.value)
        .values(status=EmailStatus.DELIVERED.value)
    )
    affected = sa.union(
        sa.select(_event.c.email_id).where(_event.c.failure_category == _COMPLAINT),
        sa.select(_email.c.id).where(_email.c.failure_category == _COMPLAINT),
    ).subquery()
    ids = sorted(bind.execute(sa.select(affected.c[0])).scalars())
    now = utcnow()
    for start in range(0, len(ids), _BATCH):
        chunk = ids[start : start + _BATCH]
        facts: dict[int, list[Any]] = {i: [] for i in chunk}
        for row in bind.execute(sa.select(_event).where(_event.c.email_id.in_(chunk))):
            event = SimpleNamespace(**row._mapping)
            event.failure_category = _enum(row, "failure_category", FailureCategory)
            facts[row.email_id].append(fact_of(event))
        for row in bind.execute(sa.select(_email).where(_email.c.id.in_(chunk))):
            email = SimpleNamespace(**row._mapping)
            email.status = EmailStatus(row.status)
            email.failure_category = _enum(row, "failure_category", FailureCategory)
            projection = project(email.sent_at, [*baseline_facts(email), *facts[email.id]])  # type: ignore[arg-type]
            values = {k: v.value if isinstance(v, Enum) else v for k, v in _projection_values(projection).items()}
            bind.execute(_email.update().where(_email.c.id == email.id).values(**values))
            if projection.status is not email.status:
                bind.execute(
                    _change.insert().values(
                        tenant_id=email.tenant_id,
                        email_id=email.id,
                        previous_status=email.status.value,
                        status=projection.status.value,
                        changed_at=projection.status_changed_at,
                        recorded_at=now,
                    )
                )
