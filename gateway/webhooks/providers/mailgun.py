"""Mailgun webhooks (JSON payloads): signature check and event parsing.

Mailgun posts one JSON object per event,
`{"signature": {"timestamp", "token", "signature"}, "event-data": {...}}`. The
signature is the hex HMAC-SHA256 of `timestamp + token` keyed with the
"HTTP webhook signing key". For a subaccount's domain Mailgun adds
`parent-signature` (the same HMAC with the primary account's key): either one
matching the configured key is accepted. A replayed token is refused later by
the database, because the token is the event's idempotency key.

Every event: key = `signature.token`, occurred_at = `event-data.timestamp`,
recipient = `event-data.recipient`, provider_message_id =
`event-data.message.headers.message-id`, email_ref = `gateway_email_id` in
`event-data.user-variables` (Mailgun sends `[]` when there are none).

| Mailgun event | status | failure_category | notes |
|---|---|---|---|
| accepted | SENT | | queued by Mailgun |
| delivered | DELIVERED | | |
| failed, severity temporary | SENT | SOFT_BOUNCE | Mailgun retries |
| failed, permanent, reason bounce | DELIVERY_FAILED | HARD_BOUNCE | INVALID_RECIPIENT (1) |
| failed, permanent, reason suppress-* | DELIVERY_FAILED | DROPPED | on a suppression list |
| failed, permanent, reason old | DELIVERY_FAILED | SOFT_BOUNCE | Mailgun gave up retrying |
| failed, permanent, reason espblock | DELIVERY_FAILED | BLOCKED | |
| failed, permanent, other reason | DELIVERY_FAILED | OTHER | "generic"... |
| rejected | DELIVERY_FAILED | DROPPED | Mailgun refused to send |
| complained | DELIVERED | SPAM_COMPLAINT | a complaint, not a failure (4) |
| opened | OPENED | | machine_open (2) |
| clicked | SENT | | history only (3) |
| unsubscribed | SENT | | history only |
| any other event (stored, list events...) | dropped | | |

(1) when the reply (`delivery-status.message`) says 5.1.x.
(2) true when `client-info.bot` is set ("apple", "gmail", "generic") or `client-type` is
"robot", false when they say a person; user agent `client-info.user-agent`, IP `ip`.
(3) "Clicked <url>". Link scanners click too, so a click is not counted as an open.
(4) it proves delivery; Mailgun adds the address to its complaints suppression list.
Reason and SMTP code: `delivery-status.message` (or `description`, or the Mailgun
`reason`) and `delivery-status.code`; `reject.reason` for a rejection.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from gateway.enums import EmailStatus, FailureCategory
from gateway.errors import MalformedPayload, WebhookAuthError
from gateway.events import IncomingEvent
from gateway.webhooks.providers._common import (
    DEFAULT_TOLERANCE,
    SPAM,
    check_window,
    constant_time_equals,
    header_unix_time,
    invalid_recipient,
    load_json,
    metadata_ref,
    opt_obj,
    opt_str,
    req_obj,
    req_str,
    smtp_code,
    unix_time,
)

__all__ = ["NAME", "parse", "verify"]

NAME = "mailgun"

_PERMANENT_CATEGORIES = {
    "suppress-bounce": FailureCategory.DROPPED,
    "suppress-unsubscribe": FailureCategory.DROPPED,
    "suppress-complaint": FailureCategory.DROPPED,
    "old": FailureCategory.SOFT_BOUNCE,
    "espblock": FailureCategory.BLOCKED,
}


def _load_object(body: bytes) -> dict[str, Any]:
    payload = load_json(body)
    if not isinstance(payload, dict):
        raise MalformedPayload("body must be a JSON object")
    return payload


def verify(
    *,
    headers: Mapping[str, str],
    body: bytes,
    signing_key: str | None,
    now: datetime,
    tolerance: timedelta = DEFAULT_TOLERANCE,
) -> None:
    """Check the HMAC in the body's signature block and the age of its timestamp.

    `headers` is unused (Mailgun signs inside the body) but accepted so every
    provider is called the same way. An unparseable body raises MalformedPayload.
    """
    del headers
    if not signing_key:
        raise WebhookAuthError("Mailgun webhook signing key is not configured")
    block = _load_object(body).get("signature")
    if not isinstance(block, dict):
        raise WebhookAuthError("missing signature block")
    timestamp = block.get("timestamp")
    if isinstance(timestamp, int) and not isinstance(timestamp, bool):
        timestamp = str(timestamp)
    if not isinstance(timestamp, str):
        raise WebhookAuthError("missing signature.timestamp")
    token = block.get("token")
    if not isinstance(token, str) or not token:
        raise WebhookAuthError("missing signature.token")
    given = [block.get(name) for name in ("signature", "parent-signature")]
    candidates = [value for value in given if isinstance(value, str) and value]
    if not candidates:
        raise WebhookAuthError("missing signature.signature")
    check_window(header_unix_time(timestamp, "signature.timestamp"), now, tolerance)
    expected = hmac.new(signing_key.encode("utf-8"), (timestamp + token).encode("utf-8"), hashlib.sha256).hexdigest()
    matched = False
    for candidate in candidates:  # no early exit: compare every candidate
        matched |= constant_time_equals(expected, candidate)
    if not matched:
        raise WebhookAuthError("bad signature")


def parse(body: bytes) -> list[IncomingEvent]:
    """Turn one Mailgun webhook post into zero or one IncomingEvent (see the table above)."""
    payload = _load_object(body)
    token = req_str(req_obj(payload, "signature"), "token", "signature")
    data = req_obj(payload, "event-data")
    where = "event-data"
    name = req_str(data, "event", where)
    if name not in _BUILDERS:
        return []
    message = opt_obj(data, "message", where)
    headers = opt_obj(message, "headers", f"{where}.message") if message else None
    variables = data.get("user-variables")
    if variables is not None and not isinstance(variables, dict | list):
        raise MalformedPayload(f"field '{where}.user-variables' must be an object")
    base = IncomingEvent(
        source=NAME,
        key=token,
        status=EmailStatus.SENT,
        occurred_at=unix_time(data.get("timestamp"), f"{where}.timestamp"),
        description="",
        provider_message_id=(opt_str(headers, "message-id", f"{where}.message.headers") if headers else None),
        email_ref=metadata_ref(variables if isinstance(variables, dict) else None, f"{where}.user-variables"),
        recipient=opt_str(data, "recipient", where),
    )
    return [_BUILDERS[name](base, data, where)]


def _accepted(base: IncomingEvent, _data: dict[str, Any], _where: str) -> IncomingEvent:
    return replace(base, description="Accepted by Mailgun")


def _reply_code(status: dict[str, Any]) -> int | None:
    """`delivery-status.code` when it is an SMTP reply code (Mailgun also uses its own 6xx)."""
    code = status.get("code")
    if isinstance(code, str) and code.isascii() and code.isdigit():
        code = int(code)
    if isinstance(code, int) and not isinstance(code, bool) and 200 <= code <= 599:
        return code
    return None


def _delivered(base: IncomingEvent, data: dict[str, Any], where: str) -> IncomingEvent:
    status = opt_obj(data, "delivery-status", where) or {}
    return replace(
        base,
        status=EmailStatus.DELIVERED,
        description="Delivered to the receiving server",
        smtp_code=_reply_code(status),
    )


def _failed(base: IncomingEvent, data: dict[str, Any], where: str) -> IncomingEvent:
    severity = req_str(data, "severity", where)
    if severity not in {"temporary", "permanent"}:
        raise MalformedPayload(f"field '{where}.severity' must be 'temporary' or 'permanent'")
    mailgun_reason = opt_str(data, "reason", where)
    status = opt_obj(data, "delivery-status", where) or {}
    message = opt_str(status, "message", f"{where}.delivery-status")
    detail = opt_str(status, "description", f"{where}.delivery-status")
    reason = message or detail or mailgun_reason
    smtp = _reply_code(status) or smtp_code(message, detail)
    if severity == "temporary":
        return replace(
            base,
            description=f"Temporary failure ({mailgun_reason or 'unknown'}), Mailgun will retry",
            failure_category=FailureCategory.SOFT_BOUNCE,
            reason=reason,
            smtp_code=smtp,
        )
    if mailgun_reason == "bounce":
        invalid = invalid_recipient(message, detail)
        category = FailureCategory.INVALID_RECIPIENT if invalid else FailureCategory.HARD_BOUNCE
    else:
        category = _PERMANENT_CATEGORIES.get(mailgun_reason or "", FailureCategory.OTHER)
    return replace(
        base,
        status=EmailStatus.DELIVERY_FAILED,
        description=f"Permanent failure ({mailgun_reason or 'unknown'})",
        failure_category=category,
        reason=reason,
        smtp_code=smtp,
    )


def _rejected(base: IncomingEvent, data: dict[str, Any], where: str) -> IncomingEvent:
    reject = opt_obj(data, "reject", where) or {}
    return replace(
        base,
        status=EmailStatus.DELIVERY_FAILED,
        description="Rejected by Mailgun, not sent",
        failure_category=FailureCategory.DROPPED,
        reason=opt_str(reject, "reason", f"{where}.reject") or None,
    )


def _complained(base: IncomingEvent, _data: dict[str, Any], _where: str) -> IncomingEvent:
    return replace(
        base,
        status=EmailStatus.DELIVERED,
        description=SPAM.format(p="Mailgun"),
        failure_category=FailureCategory.SPAM_COMPLAINT,
    )


def _opened(base: IncomingEvent, data: dict[str, Any], where: str) -> IncomingEvent:
    client = opt_obj(data, "client-info", where)
    machine: bool | None = None
    user_agent = None
    if client is not None:
        bot = opt_str(client, "bot", f"{where}.client-info")
        client_type = opt_str(client, "client-type", f"{where}.client-info")
        if bot is not None or client_type is not None:
            machine = bool(bot) or client_type == "robot"
        user_agent = opt_str(client, "user-agent", f"{where}.client-info")
    return replace(
        base,
        status=EmailStatus.OPENED,
        description="Opened (tracking image fetched)",
        machine_open=machine,
        user_agent=user_agent,
        ip=opt_str(data, "ip", where),
    )


def _clicked(base: IncomingEvent, data: dict[str, Any], where: str) -> IncomingEvent:
    url = opt_str(data, "url", where)
    return replace(base, description=f"Clicked {url}" if url else "Clicked a link")


def _unsubscribed(base: IncomingEvent, _data: dict[str, Any], _where: str) -> IncomingEvent:
    return replace(base, description="Unsubscribed")


_Builder = Callable[[IncomingEvent, dict[str, Any], str], IncomingEvent]

_BUILDERS: dict[str, _Builder] = {
    "accepted": _accepted,
    "delivered": _delivered,
    "failed": _failed,
    "rejected": _rejected,
    "complained": _complained,
    "opened": _opened,
    "clicked": _clicked,
    "unsubscribed": _unsubscribed,
}
