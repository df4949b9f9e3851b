"""What every source hands to the one ingestion path: a normalized event.

Webhooks, the tracking image and the `recordEmailEvent` mutation all turn their
input into `IncomingEvent`s; `gateway.ingest` takes it from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gateway.enums import EmailStatus, FailureCategory

__all__ = ["METADATA_KEY", "IncomingEvent", "normalize_message_id"]

# The key under which senders put the gateway's e-mail id (the `id` that
# registerEmail returned) in a provider's custom metadata.
METADATA_KEY = "gateway_email_id"


@dataclass(frozen=True, slots=True)
class IncomingEvent:
    """One event about one e-mail, as a source reported it.

    `status` is what the event says about delivery: temporary failures (deferrals,
    soft bounces the provider still retries) and events that carry no status
    (clicks, unsubscribes) are recorded in the history with `status=SENT` or
    `OPENED` as documented per provider, so they never fail an e-mail.
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


def normalize_message_id(value: str | None) -> str | None:
    """Provider message ids as registered and as reported: no angle brackets, no spaces."""
    if value is None:
        return None
    cleaned = value.strip().strip("<>").strip()
    return cleaned or None
