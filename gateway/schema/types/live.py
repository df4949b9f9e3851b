"""What a live subscription receives."""

from __future__ import annotations

from datetime import datetime

import strawberry

from .emails import Email
from .enums import EmailStatus

__all__ = ["EmailStatusChange"]


@strawberry.type(description="One change of an e-mail's status.")
class EmailStatusChange:
    cursor: str = strawberry.field(description="Opaque position in the change log; pass it as `since` to resume.")
    email: Email = strawberry.field(description="The e-mail, as it is now.")
    previous_status: EmailStatus | None = strawberry.field(
        description="The status before the change; null when the e-mail was just registered."
    )
    status: EmailStatus = strawberry.field(description="The new status.")
    changed_at: datetime = strawberry.field(description="When the e-mail reached the new status.")
