"""Resend webhooks (delivered by Svix): signature check and event parsing.

Svix signs `{svix-id}.{svix-timestamp}.{raw body}` with HMAC-SHA256, keyed with
the base64-decoded part of the endpoint's `whsec_...` secret, and sends
`svix-id`, `svix-timestamp` (Unix seconds) and `svix-signature`, a
space-separated list of `v1,<base64>` (several during a secret rotation: any
one matching is enough). Every delivery attempt is signed afresh, so the
5-minute window does not refuse retries. Resend posts one JSON object
`{type, created_at, data}` per event.

Every event: key = the `svix-id` header (the same on every retry of an event);
an event whose `data.to` lists several recipients gives one IncomingEvent per
recipient keyed `svix-id:recipient`. occurred_at = `created_at` (when the event
happened; `data.created_at` is when the e-mail was created),
provider_message_id = `data.email_id`, email_ref = the `gateway_email_id` tag
(`data.tags` is documented as a list of `{name, value}` and sent as an object
`{name: value}` in payload samples: both are read).

| Resend event | status | failure_category |
|---|---|---|
| email.sent | SENT | |
| email.scheduled | SENT | (history only) |
| email.delivered | DELIVERED | |
| email.delivery_delayed | SENT | SOFT_BOUNCE (Resend retries) |
| email.bounced, Permanent | DELIVERY_FAILED | HARD_BOUNCE |
| email.bounced, Permanent NoEmail | DELIVERY_FAILED | INVALID_RECIPIENT |
| email.bounced, Permanent Suppressed, OnAccountSuppressionList | DELIVERY_FAILED | DROPPED |
| email.bounced, Transient | DELIVERY_FAILED | SOFT_BOUNCE (Resend gave up) |
| email.bounced, Transient ContentRejected, AttachmentRejected | DELIVERY_FAILED | BLOCKED |
| email.bounced, Undetermined | DELIVERY_FAILED | OTHER |
| email.bounced without `bounce` details | DELIVERY_FAILED | HARD_BOUNCE |
| email.complained | DELIVERED | SPAM_COMPLAINT (3) |
| email.failed | DELIVERY_FAILED | OTHER (not sent: quota, domain...) |
| email.suppressed | DELIVERY_FAILED | DROPPED (on the suppression list) |
| email.opened | OPENED | (1) |
| email.clicked | SENT | (history only, 2) |
| email.received, domain.*, contact.*, other | dropped | |

`bounce.type`/`bounce.subType` are Amazon SES's bounce types; `bounce.message`
is the reason (SMTP code parsed from it when present).
(1) user agent and IP from `open.userAgent`/`open.ipAddress` when sent; Resend
has no machine-open flag.
(2) "Clicked <click.link>". Link scanners click too, so a click is not an open.
(3) a complaint proves delivery, it is no failure; Resend suppresses the address.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime, timedelta
from email.utils import parseaddr
from typing import Any

from gateway.enums import EmailStatus, FailureCategory
from gateway.errors import MalformedPayload, WebhookAuthError
from gateway.events import METADATA_KEY, IncomingEvent
from gateway.webhooks.providers._common import (
    DEFAULT_TOLERANCE,
    SPAM,
    check_window,
    constant_time_equals,
    header_unix_time,
    iso_time,
    load_json,
    metadata_ref,
    opt_obj,
    opt_str,
    req_list,
    req_obj,
    req_str,
    ses_bounce_category,
    smtp_code,
    split_keys,
)

__all__ = ["NAME", "parse", "verify"]

NAME = "resend"

_FAILED = EmailStatus.DELIVERY_FAILED
_SIMPLE: dict[str, dict[str, Any]] = {
    "email.sent": {"status": EmailStatus.SENT, "description": "Accepted by Resend"},
    "email.scheduled": {"status": EmailStatus.SENT, "description": "Scheduled for sending"},
    "email.delivered": {
        "status": EmailStatus.DELIVERED,
        "description": "Delivered to the receiving server",
    },
    "email.delivery_delayed": {
        "status": EmailStatus.SENT,
        "description": "Delivery delayed, Resend will retry",
        "failure_category": FailureCategory.SOFT_BOUNCE,
    },
    "email.complained": {
        "status": EmailStatus.DELIVERED,
        "description": SPAM.format(p="Resend"),
        "failure_category": FailureCategory.SPAM_COMPLAINT,
    },
}
_KNOWN = set(_SIMPLE) | {"email.bounced", "email.failed", "email.suppressed"}
_KNOWN |= {"email.opened", "email.clicked"}


def _secret_key(secret: str) -> bytes:
    encoded = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise WebhookAuthError("Resend signing secret is not a valid whsec_ secret") from None
    if not key:
        raise WebhookAuthError("Resend signing secret is not configured")
    return key


def verify(
    *,
    headers: Mapping[str, str],
    body: bytes,
    secret: str | None,
    now: datetime,
    tolerance: timedelta = DEFAULT_TOLERANCE,
) -> None:
    """Check the Svix signature (`v1` HMAC-SHA256) and the age of `svix-timestamp`."""
    if not secret or not secret.removeprefix("whsec_"):
        raise WebhookAuthError("Resend signing secret is not configured")
    key = _secret_key(secret)
    message_id = headers.get("svix-id")
    if not message_id:
        raise WebhookAuthError("missing svix-id header")
    timestamp = headers.get("svix-timestamp") or ""
    check_window(header_unix_time(timestamp, "svix-timestamp header"), now, tolerance)
    header = headers.get("svix-signature")
    if not header:
        raise WebhookAuthError("missing svix-signature header")
    signed = message_id.encode("utf-8") + b"." + timestamp.encode("ascii") + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode("ascii")
    matched = False
    for entry in header.split():  # no early exit: compare every v1 signature
        version, _, value = entry.partition(",")
        if version == "v1":
            matched |= constant_time_equals(expected, value)
    if not matched:
        raise WebhookAuthError("bad signature")


def parse(body: bytes, *, svix_id: str) -> list[IncomingEvent]:
    """Turn one Resend event into IncomingEvents keyed by the `svix-id` header (see above)."""
    if not svix_id:
        raise MalformedPayload("missing svix-id")
    raw = load_json(body)
    if not isinstance(raw, dict):
        raise MalformedPayload("body must be a JSON object")
    kind = req_str(raw, "type")
    if kind not in _KNOWN:
        return []
    occurred_at = iso_time(raw.get("created_at"), "created_at")
    data = req_obj(raw, "data")
    email_id = req_str(data, "email_id", "data")
    recipients: list[str | None] = []
    for index, value in enumerate(req_list(data, "to", "data")):
        address = parseaddr(value)[1] if isinstance(value, str) else ""
        if "@" not in address:
            raise MalformedPayload(f"field 'data.to[{index}]' must be an e-mail address")
        if address not in recipients:
            recipients.append(address)
    if not recipients:
        raise MalformedPayload("field 'data.to' is empty")
    fields = _fields(kind, data)
    email_ref = metadata_ref(_tags(data), "data.tags")
    return [
        IncomingEvent(
            source=NAME,
            key=key,
            occurred_at=occurred_at,
            provider_message_id=email_id,
            email_ref=email_ref,
            recipient=recipient,
            **fields,
        )
        for key, recipient in split_keys(svix_id, recipients)
    ]


def _tags(data: dict[str, Any]) -> dict[str, Any] | None:
    tags = data.get("tags")
    if tags is None or isinstance(tags, dict):
        return tags
    if not isinstance(tags, list):
        raise MalformedPayload("field 'data.tags' must be a list or an object")
    for index, tag in enumerate(tags):
        if not isinstance(tag, dict):
            raise MalformedPayload(f"field 'data.tags[{index}]' must be an object")
        if tag.get("name") == METADATA_KEY:
            return {METADATA_KEY: tag.get("value")}
    return None


def _fields(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """The status fields of one event type (the same for every recipient)."""
    if kind in _SIMPLE:
        return dict(_SIMPLE[kind])
    if kind == "email.bounced":
        bounce = opt_obj(data, "bounce", "data") or {}
        message = opt_str(bounce, "message", "data.bounce")
        bounce_type = opt_str(bounce, "type", "data.bounce")
        sub_type = opt_str(bounce, "subType", "data.bounce")
        if bounce_type is None:
            category = FailureCategory.OTHER if bounce else FailureCategory.HARD_BOUNCE
        else:
            category = ses_bounce_category(bounce_type, sub_type)
        label = "/".join(part for part in (bounce_type, sub_type) if part)
        return {
            "status": _FAILED,
            "description": f"Bounced ({label})" if label else "Bounced",
            "failure_category": category,
            "reason": message,
            "smtp_code": smtp_code(message),
        }
    if kind in {"email.failed", "email.suppressed"}:
        name = kind.removeprefix("email.")
        detail = opt_obj(data, name, "data") or {}
        where = f"data.{name}"
        reason = opt_str(detail, "reason", where) or opt_str(detail, "message", where)
        dropped = kind == "email.suppressed"
        return {
            "status": _FAILED,
            "description": "Suppressed by Resend, not sent" if dropped else "Failed to send",
            "failure_category": FailureCategory.DROPPED if dropped else FailureCategory.OTHER,
            "reason": reason,
        }
    name = "open" if kind == "email.opened" else "click"
    detail = opt_obj(data, name, "data") or {}
    where = f"data.{name}"
    link = opt_str(detail, "link", where)
    if kind == "email.opened":
        description, status = "Opened (tracking image fetched)", EmailStatus.OPENED
    else:
        description, status = (f"Clicked {link}" if link else "Clicked a link"), EmailStatus.SENT
    return {
        "status": status,
        "description": description,
        "user_agent": opt_str(detail, "userAgent", where),
        "ip": opt_str(detail, "ipAddress", where),
    }
