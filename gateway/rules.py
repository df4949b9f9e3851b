"""The rules of the fields a screen shows, as pure functions of an e-mail's columns.

Both executors call them: the Strawberry types (`gateway.schema.types.emails`)
on ORM rows, and the compiled writers (`gateway.fastpath.writers`) on plain
rows. No I/O, no framework: a rule changes here, once.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from gateway.enums import EmailStatus

__all__ = [
    "COMPLAINT_NOTICE",
    "FAILURE_COLUMNS",
    "HISTORY_COLUMNS",
    "OPEN_NOTICE",
    "failure_shown",
    "history_available_until",
    "history_expired",
]

OPEN_NOTICE = (
    "An open only means that the tracking image was fetched. Mail clients, privacy "
    "proxies (such as Apple Mail Privacy Protection), image proxies and security "
    "scanners fetch it with no person involved, so an open is not proof that anyone "
    "read the e-mail, and it is no legal evidence."
)

COMPLAINT_NOTICE = (
    "The recipient reported this e-mail as spam. That proves it was delivered, so its "
    "status stays what the delivery gave. The provider now suppresses the address: it "
    "drops later e-mails to it without trying, until the address is removed from its "
    "suppression list."
)

# The columns each rule reads (what a compiled plan must select).
FAILURE_COLUMNS = ("status", "failure_category", "failure_occurred_at")
HISTORY_COLUMNS = ("sent_at", "history_purged_at")


def failure_shown(status: Any, category: Any, occurred_at: datetime | None) -> bool:
    """Whether the details show the latest failure: only while the status is DELIVERY_FAILED.

    The row keeps the latest failure even after a later delivery superseded it.
    `status` is the enum member (ORM) or its name (plain rows).
    """
    return (status == EmailStatus.DELIVERY_FAILED.value) and category is not None and occurred_at is not None


def history_available_until(sent_at: datetime, history_days: int) -> datetime:
    """Until when the detailed event history of an e-mail sent at `sent_at` is kept."""
    return sent_at + timedelta(days=history_days)


def history_expired(sent_at: datetime, purged_at: datetime | None, history_days: int, now: datetime) -> bool:
    """True once the history has been purged or its window has passed."""
    return purged_at is not None or now >= history_available_until(sent_at, history_days)
