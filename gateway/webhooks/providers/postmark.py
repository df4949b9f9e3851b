"""Postmark webhooks: HTTP basic auth check and event parsing.

Postmark signs nothing: a webhook URL is protected with HTTP basic auth
credentials set on the webhook (over HTTPS), so `verify` checks the
`Authorization: Basic ...` header in constant time. Postmark posts one JSON
object per event, told apart by `RecordType`.

Every event: key = SHA-256 hex of RecordType, MessageID, recipient and the event
time in UTC ISO 8601 (newline-separated: Postmark gives no event id to every
record type), provider_message_id = `MessageID`, email_ref = `gateway_email_id`
in `Metadata`. Recipient and time: Delivery `Recipient`/`DeliveredAt`; Bounce
and SpamComplaint `Email`/`BouncedAt`; Open and Click `Recipient`/`ReceivedAt`;
SubscriptionChange `Recipient`/`ChangedAt`.

| RecordType: bounce `Type` | status | failure_category |
|---|---|---|
| Delivery | DELIVERED | |
| Bounce: HardBounce | DELIVERY_FAILED | HARD_BOUNCE, INVALID_RECIPIENT (1) |
| Bounce: SoftBounce | DELIVERY_FAILED | SOFT_BOUNCE (2) |
| Bounce: Transient, DnsError | SENT | SOFT_BOUNCE (3) |
| Bounce: BadEmailAddress | DELIVERY_FAILED | INVALID_RECIPIENT |
| Bounce: Blocked, SpamNotification, VirusNotification, DMARCPolicy | DELIVERY_FAILED | BLOCKED |
| Bounce: SpamComplaint | DELIVERED | SPAM_COMPLAINT (8) |
| Bounce: ManuallyDeactivated, Unconfirmed | DELIVERY_FAILED | DROPPED (4) |
| Bounce: Unknown, SMTPApiError, TemplateRenderingFailed, other | DELIVERY_FAILED | OTHER |
| Bounce: AutoResponder, AddressChange, ChallengeVerification, ... (5) | SENT | history only |
| SpamComplaint | DELIVERED | SPAM_COMPLAINT (8) |
| Open | OPENED | (6) |
| Click | SENT | history only (7) |
| SubscriptionChange | SENT | history only: it affects later sends |
| any other RecordType (Inbound...) | dropped | |

(1) INVALID_RECIPIENT when `Details` says 5.1.x.
(2) "Soft bounce/Undeliverable": Postmark has stopped trying.
(3) "Message delayed" / temporary DNS error: Postmark still retries.
(4) the address is inactive (suppressed), the e-mail was not sent.
(5) also OpenRelayTest, Subscribe, Unsubscribe, InboundError: replies and
notices, not delivery failures.
(6) user agent `UserAgent`, IP `Geo.IP`; Postmark has no machine-open flag.
(7) "Clicked <OriginalLink>". Link scanners click too, so not counted as an open.
(8) a complaint proves delivery, it is no failure; Postmark deactivates the address.
Reason: `Details`; SMTP code parsed from it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from gateway.enums import EmailStatus, FailureCategory
from gateway.errors import MalformedPayload, WebhookAuthError
from gateway.events import IncomingEvent
from gateway.webhooks.providers._common import (
    SPAM,
    constant_time_equals,
    invalid_recipient,
    iso_time,
    load_json,
    metadata_ref,
    opt_obj,
    opt_str,
    req_str,
    smtp_code,
)

__all__ = ["NAME", "parse", "verify"]

NAME = "postmark"

_FAILED = EmailStatus.DELIVERY_FAILED
# Bounce `Type` -> (status, category); types not listed are permanent failures of category OTHER.
_BOUNCE_TYPES: dict[str, tuple[EmailStatus, FailureCategory | None]] = {
    "HardBounce": (_FAILED, FailureCategory.HARD_BOUNCE),
    "SoftBounce": (_FAILED, FailureCategory.SOFT_BOUNCE),
    "Transient": (EmailStatus.SENT, FailureCategory.SOFT_BOUNCE),
    "DnsError": (EmailStatus.SENT, FailureCategory.SOFT_BOUNCE),
    "BadEmailAddress": (_FAILED, FailureCategory.INVALID_RECIPIENT),
    "Blocked": (_FAILED, FailureCategory.BLOCKED),
    "SpamNotification": (_FAILED, FailureCategory.BLOCKED),
    "VirusNotification": (_FAILED, FailureCategory.BLOCKED),
    "DMARCPolicy": (_FAILED, FailureCategory.BLOCKED),
    "SpamComplaint": (EmailStatus.DELIVERED, FailureCategory.SPAM_COMPLAINT),
    "ManuallyDeactivated": (_FAILED, FailureCategory.DROPPED),
    "Unconfirmed": (_FAILED, FailureCategory.DROPPED),
    "AutoResponder": (EmailStatus.SENT, None),
    "AddressChange": (EmailStatus.SENT, None),
    "ChallengeVerification": (EmailStatus.SENT, None),
    "OpenRelayTest": (EmailStatus.SENT, None),
    "Subscribe": (EmailStatus.SENT, None),
    "Unsubscribe": (EmailStatus.SENT, None),
    "InboundError": (EmailStatus.SENT, None),
}
# RecordType -> (recipient field, time field)
_FIELDS = {
    "Delivery": ("Recipient", "DeliveredAt"),
    "Bounce": ("Email", "BouncedAt"),
    "SpamComplaint": ("Email", "BouncedAt"),
    "Open": ("Recipient", "ReceivedAt"),
    "Click": ("Recipient", "ReceivedAt"),
    "SubscriptionChange": ("Recipient", "ChangedAt"),
}


def verify(
    *,
    headers: Mapping[str, str],
    body: bytes,
    username: str | None,
    password: str | None,
    now: datetime,
) -> None:
    """Check the basic auth credentials Postmark sends with every webhook.

    `body` and `now` are unused (Postmark neither signs nor timestamps a request)
    but accepted so every provider is called the same way.
    """
    del body, now
    if not username or not password:
        raise WebhookAuthError("Postmark webhook credentials are not configured")
    header = headers.get("authorization")
    if not header:
        raise WebhookAuthError("missing Authorization header")
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise WebhookAuthError("Authorization header is not basic auth")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise WebhookAuthError("Authorization header is malformed") from None
    given_user, separator, given_password = decoded.partition(":")
    # Both comparisons always run, so the time taken does not tell which one failed.
    user_ok = constant_time_equals(username, given_user)
    password_ok = constant_time_equals(password, given_password)
    if not (separator and user_ok and password_ok):
        raise WebhookAuthError("wrong credentials")


def parse(body: bytes) -> list[IncomingEvent]:
    """Turn one Postmark webhook post into zero or one IncomingEvent (see the table above)."""
    raw = load_json(body)
    if not isinstance(raw, dict):
        raise MalformedPayload("body must be a JSON object")
    record_type = req_str(raw, "RecordType")
    if record_type not in _FIELDS:
        return []
    recipient_field, time_field = _FIELDS[record_type]
    message_id = req_str(raw, "MessageID")
    recipient = req_str(raw, recipient_field)
    occurred_at = iso_time(raw.get(time_field), time_field)
    key_source = "\n".join((record_type, message_id, recipient, occurred_at.isoformat()))
    base = IncomingEvent(
        source=NAME,
        key=hashlib.sha256(key_source.encode("utf-8")).hexdigest(),
        status=EmailStatus.SENT,
        occurred_at=occurred_at,
        description="",
        provider_message_id=message_id,
        email_ref=metadata_ref(opt_obj(raw, "Metadata"), "Metadata"),
        recipient=recipient,
    )
    return [_build(record_type, base, raw)]


def _build(record_type: str, base: IncomingEvent, raw: dict[str, Any]) -> IncomingEvent:
    details = opt_str(raw, "Details") or None
    if record_type == "Delivery":
        return replace(
            base,
            status=EmailStatus.DELIVERED,
            description="Delivered to the receiving server",
            smtp_code=smtp_code(details),
        )
    if record_type in {"Bounce", "SpamComplaint"}:
        return _bounce(base, raw, details)
    if record_type == "Open":
        geo = opt_obj(raw, "Geo")
        return replace(
            base,
            status=EmailStatus.OPENED,
            description="Opened (tracking image fetched)",
            user_agent=opt_str(raw, "UserAgent") or None,
            ip=opt_str(geo, "IP", "Geo") if geo else None,
        )
    if record_type == "Click":
        link = opt_str(raw, "OriginalLink")
        geo = opt_obj(raw, "Geo")
        return replace(
            base,
            description=f"Clicked {link}" if link else "Clicked a link",
            user_agent=opt_str(raw, "UserAgent") or None,
            ip=opt_str(geo, "IP", "Geo") if geo else None,
        )
    suppress = raw.get("SuppressSending")
    if not isinstance(suppress, bool):
        raise MalformedPayload("field 'SuppressSending' must be a boolean")
    why = opt_str(raw, "SuppressionReason")
    text = f"Sending suppressed ({why or 'unknown reason'})" if suppress else "Sending reactivated"
    return replace(base, description=f"Subscription change: {text}")


def _bounce(base: IncomingEvent, raw: dict[str, Any], details: str | None) -> IncomingEvent:
    category: FailureCategory | None
    if raw.get("RecordType") == "SpamComplaint":  # its Type is "SpamComplaint" too
        bounce_type = opt_str(raw, "Type") or "SpamComplaint"
        status, category = EmailStatus.DELIVERED, FailureCategory.SPAM_COMPLAINT
    else:
        bounce_type = req_str(raw, "Type")
        status, category = _BOUNCE_TYPES.get(bounce_type, (_FAILED, FailureCategory.OTHER))
    if category is FailureCategory.HARD_BOUNCE and invalid_recipient(details):
        category = FailureCategory.INVALID_RECIPIENT
    name = opt_str(raw, "Name") or bounce_type
    description = opt_str(raw, "Description")
    if category is FailureCategory.SPAM_COMPLAINT:
        text = SPAM.format(p="Postmark")
    elif status is EmailStatus.SENT and category is None:
        text = f"{name} (not a delivery failure)"
    elif status is EmailStatus.SENT:
        text = f"{name}: temporary, Postmark will retry"
    else:
        text = name
    return replace(
        base,
        status=status,
        description=f"{text}: {description}" if description else text,
        failure_category=category,
        reason=details if category is not None else None,
        smtp_code=smtp_code(details) if category is not None else None,
    )
