"""What every source hands to the one ingestion path: a normalized event.

Webhooks, the tracking image and the `recordEmailEvent` mutation all turn their
input into `IncomingEvent`s; `gateway.ingest` takes it from there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from datetime import datetime
from email.utils import parseaddr

from gateway.enums import EmailStatus, FailureCategory

__all__ = [
    "CHANGES_CHANNEL",
    "METADATA_KEY",
    "IncomingEvent",
    "normalize_message_id",
    "normalize_recipient",
    "storable_text",
]

# The broker channel on which the ingestion path announces committed status changes
# and every process's change feed (`gateway.live`) listens.
CHANGES_CHANNEL = "gateway.changes"

# The key under which senders put the gateway's e-mail id (the `id` that
# registerEmail returned) in a provider's custom metadata.
METADATA_KEY = "gateway_email_id"

# What PostgreSQL refuses in text: NUL, and lone surrogates (not encodable as UTF-8).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


_NOT_DELIVERED = (EmailStatus.SENT, EmailStatus.DELIVERY_FAILED)


def storable_text(value: str) -> str:
    """The text with every character a database refuses replaced by U+FFFD."""
    return _UNSTORABLE.sub("\ufffd", value)


@dataclass(frozen=True, slots=True)
class IncomingEvent:
    """One event about one e-mail, as a source reported it.

    `status` is what the event says about delivery: temporary failures (deferrals,
    soft bounces the provider still retries) and events that carry no status
    (clicks, unsubscribes) are recorded in the history with `status=SENT` or
    `OPENED` as documented per provider, so they never fail an e-mail.

    Every source builds one of these, so this is where provider text is made
    storable: a NUL in one reason must not refuse the whole batch (the provider
    would retry it until it gives up, losing every event in it).
    """

    source: str
    key: str
    status: EmailStatus
    occurred_at: datetime
    description: str
    provider_message_id: str | None = None
    email_ref: str | None = None
    recipient: str | None = None
    failure_category: FailureCategory | None = None
    reason: str | None = None
    smtp_code: int | None = None
    machine_open: bool | None = None
    user_agent: str | None = None
    ip: str | None = None

    def __post_init__(self) -> None:
        if self.failure_category == FailureCategory.SPAM_COMPLAINT and self.status in _NOT_DELIVERED:
            # A spam complaint proves delivery (DESIGN.md): whatever source reports one
            # (recordEmailEvent too) records it as a delivery with its category.
            object.__setattr__(self, "status", EmailStatus.DELIVERED)
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, str) and _UNSTORABLE.search(value):
                object.__setattr__(self, f.name, storable_text(value))


def normalize_message_id(value: str | None) -> str | None:
    """Provider message ids as registered and as reported: no angle brackets, no spaces."""
    if value is None:
        return None
    cleaned = value.strip().strip("<>").strip()
    return cleaned or None


def normalize_recipient(value: str | None) -> str | None:
    """An address as registered and as reported, comparable: the bare address
    ("Name <a@b>" gives "a@b"), without spaces, case-folded."""
    if value is None:
        return None
    _, address = parseaddr(value)
    cleaned = (address or value).strip().strip("<>").strip().casefold()
    return cleaned or None
