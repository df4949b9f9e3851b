"""SendGrid (Twilio) Event Webhook: Signed Event Webhook check and event parsing.

SendGrid posts a JSON array of events. With "Signed Event Webhook Requests" on,
it signs `X-Twilio-Email-Event-Webhook-Timestamp` + raw body with ECDSA P-256 /
SHA-256 and sends the base64 DER signature in
`X-Twilio-Email-Event-Webhook-Signature`; the verification key is the base64
DER public key shown under Mail Settings (a PEM block is accepted too).

Every event: key = `sg_event_id`, occurred_at = `timestamp`, recipient = `email`,
provider_message_id = `sg_message_id` up to its ".filter" suffix (the X-Message-Id the
send API returned; asynchronous bounces carry none), email_ref = the
`gateway_email_id` custom argument (custom args are top-level keys of the event).

| SendGrid event | status | failure_category | notes |
|---|---|---|---|
| processed | SENT | | accepted by SendGrid |
| deferred | SENT | SOFT_BOUNCE | temporary, SendGrid retries |
| delivered | DELIVERED | | |
| bounce (type bounce or none) | DELIVERY_FAILED | HARD_BOUNCE | INVALID_RECIPIENT (1) |
| bounce (type blocked) | DELIVERY_FAILED | BLOCKED | refused, or deferred > 72 h (3) |
| dropped | DELIVERY_FAILED | DROPPED | never attempted |
| spamreport | DELIVERED | SPAM_COMPLAINT | a complaint, not a failure (4) |
| open | OPENED | | machine_open = `sg_machine_open` |
| click | SENT | | history only (2) |
| unsubscribe, group_unsubscribe, group_resubscribe | SENT | | history only |
| account_status_change, any other event | dropped | | not about one e-mail |

(1) when `bounce_classification` is "Invalid Address" or the reply is 5.1.x.
(2) "Clicked <url>". Link scanners click too, so a click is not counted as an open.
(3) SendGrid no longer retries the message; the address is not suppressed.
(4) it proves delivery; SendGrid puts the address on its spam reports suppression list.
Reasons: `response` (deferred), `reason` (bounce, dropped); user agent and IP of
opens and clicks from `useragent` and `ip`.

SMTP code: from `reason`/`response` ("550 5.1.1 ..."); for a bounce whose reason
has none, from the class of `status` ("5.0.0" means 500, per SendGrid's docs).
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.enums import EmailStatus, FailureCategory
from gateway.errors import MalformedPayload, WebhookAuthError
from gateway.events import IncomingEvent
from gateway.webhooks.providers._common import (
    DEFAULT_TOLERANCE,
    SPAM,
    check_window,
    header_unix_time,
    invalid_recipient,
    load_json,
    metadata_ref,
    opt_str,
    req_str,
    smtp_code,
    unix_time,
)

__all__ = ["NAME", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "parse", "verify"]

NAME = "sendgrid"
SIGNATURE_HEADER = "x-twilio-email-event-webhook-signature"
TIMESTAMP_HEADER = "x-twilio-email-event-webhook-timestamp"

_HISTORY_ONLY = {
    "unsubscribe": "Unsubscribed from all e-mails",
    "group_unsubscribe": "Unsubscribed from group",
    "group_resubscribe": "Resubscribed to group",
}
_KNOWN = {"processed", "deferred", "delivered", "bounce", "dropped", "spamreport", "open", "click"}
_KNOWN |= set(_HISTORY_ONLY)


def send_api_message_id(sg_message_id: str | None) -> str | None:
    """The X-Message-Id that SendGrid's send API returned, from an event's sg_message_id.

    SendGrid appends the filter that processed the message to the id it returned
    (".filter...", also ".recvd-..." on older accounts). Today's ids have no dot
    of their own (`W86EgYT6SQKk0lRflfLRsA.filter0425p1mdw1-...`), while the older
    ones in SendGrid's samples do (`14c5d75ce93.dfd.64b469.filter0001...`), so cut
    at the filter marker when there is one, else at the first dot.
    """
    if not sg_message_id:
        return None
    for marker in (".filter", ".recvd-"):
        head, found, _ = sg_message_id.partition(marker)
        if found:
            return head
    return sg_message_id.split(".", 1)[0]


@functools.lru_cache(maxsize=8)
def _load_key(setting: str) -> ec.EllipticCurvePublicKey:
    """Parse the verification key once; SendGrid shows it as base64 DER without PEM framing."""
    text = setting.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode("ascii"))
        else:
            der = base64.b64decode("".join(text.split()), validate=True)
            key = serialization.load_der_public_key(der)
    except (ValueError, binascii.Error, UnsupportedAlgorithm, UnicodeEncodeError) as exc:
        raise WebhookAuthError("SendGrid verification key is not a valid public key") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise WebhookAuthError("SendGrid verification key is not an ECDSA P-256 key")
    return key


def verify(
    *,
    headers: Mapping[str, str],
    body: bytes,
    public_key: str | None,
    now: datetime,
    tolerance: timedelta = DEFAULT_TOLERANCE,
) -> None:
    """Check the ECDSA signature over timestamp + raw body, and the timestamp's age.

    `headers` has lower-case names. Raises WebhookAuthError saying what is wrong.
    """
    if not public_key:
        raise WebhookAuthError("SendGrid verification key is not configured")
    key = _load_key(public_key)
    signature_b64 = headers.get(SIGNATURE_HEADER)
    if not signature_b64:
        raise WebhookAuthError(f"missing {SIGNATURE_HEADER} header")
    timestamp = headers.get(TIMESTAMP_HEADER) or ""
    check_window(header_unix_time(timestamp, f"{TIMESTAMP_HEADER} header"), now, tolerance)
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        raise WebhookAuthError("bad signature: not base64") from None
    try:
        key.verify(signature, timestamp.encode("ascii") + body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise WebhookAuthError("bad signature") from None


def parse(body: bytes) -> list[IncomingEvent]:
    """Turn a SendGrid event batch into IncomingEvents (events carrying no status are kept
    as SENT history or dropped, per the table above)."""
    payload = load_json(body)
    if not isinstance(payload, list):
        raise MalformedPayload("body must be a JSON array of events")
    events: list[IncomingEvent] = []
    for index, item in enumerate(payload):
        where = f"[{index}]"
        if not isinstance(item, dict):
            raise MalformedPayload(f"event {where} must be an object")
        event = _parse_event(item, where)
        if event is not None:
            events.append(event)
    return events


_ENHANCED_STATUS = re.compile(r"([245])\.\d{1,3}\.\d{1,3}", re.ASCII)


def _status_code(status: str | None) -> int | None:
    """SendGrid documents `status` "5.0.0" as equivalent to a 500 reply."""
    match = _ENHANCED_STATUS.fullmatch(status or "")
    return int(match.group(1)) * 100 if match else None


def _parse_event(raw: dict[str, Any], where: str) -> IncomingEvent | None:
    name = req_str(raw, "event", where)
    if name not in _KNOWN:
        return None
    message_id = opt_str(raw, "sg_message_id", where)
    base = IncomingEvent(
        source=NAME,
        key=req_str(raw, "sg_event_id", where),
        status=EmailStatus.SENT,
        occurred_at=unix_time(raw.get("timestamp"), f"{where}.timestamp"),
        description="",
        provider_message_id=send_api_message_id(message_id),
        email_ref=metadata_ref(raw, where),
        recipient=req_str(raw, "email", where),
    )
    reason = opt_str(raw, "reason", where)
    response = opt_str(raw, "response", where)

    if name == "processed":
        return replace(base, description="Accepted by SendGrid")
    if name == "deferred":
        attempt = raw.get("attempt")
        suffix = f" (attempt {attempt})" if isinstance(attempt, str | int) else ""
        return replace(
            base,
            description=f"Deferred by the receiving server, SendGrid will retry{suffix}",
            failure_category=FailureCategory.SOFT_BOUNCE,
            reason=response or reason,
            smtp_code=smtp_code(response, reason),
        )
    if name == "delivered":
        return replace(
            base,
            status=EmailStatus.DELIVERED,
            description="Delivered to the receiving server",
            smtp_code=smtp_code(response),
        )
    if name == "bounce":
        return _bounce(base, raw, where, reason)
    if name == "dropped":
        return replace(
            base,
            status=EmailStatus.DELIVERY_FAILED,
            description="Dropped by SendGrid without a delivery attempt",
            failure_category=FailureCategory.DROPPED,
            reason=reason,
            smtp_code=smtp_code(reason),
        )
    if name == "spamreport":
        return replace(
            base,
            status=EmailStatus.DELIVERED,
            description=SPAM.format(p="SendGrid"),
            failure_category=FailureCategory.SPAM_COMPLAINT,
        )
    if name == "open":
        machine = raw.get("sg_machine_open")
        if machine is not None and not isinstance(machine, bool):
            raise MalformedPayload(f"field '{where}.sg_machine_open' must be a boolean")
        return replace(
            base,
            status=EmailStatus.OPENED,
            description="Opened (tracking image fetched)",
            machine_open=machine,
            user_agent=opt_str(raw, "useragent", where),
            ip=opt_str(raw, "ip", where),
        )
    if name == "click":
        url = opt_str(raw, "url", where)
        return replace(
            base,
            description=f"Clicked {url}" if url else "Clicked a link",
            user_agent=opt_str(raw, "useragent", where),
            ip=opt_str(raw, "ip", where),
        )
    return replace(base, description=_HISTORY_ONLY[name])


def _bounce(base: IncomingEvent, raw: dict[str, Any], where: str, reason: str | None) -> IncomingEvent:
    kind = opt_str(raw, "type", where) or "bounce"
    status = opt_str(raw, "status", where)
    classification = opt_str(raw, "bounce_classification", where)
    if kind == "blocked":
        category, description = FailureCategory.BLOCKED, "Blocked by the receiving server"
    elif classification == "Invalid Address" or invalid_recipient(reason, status):
        category, description = FailureCategory.INVALID_RECIPIENT, "Bounced: invalid recipient"
    else:
        category, description = FailureCategory.HARD_BOUNCE, "Bounced by the receiving server"
    if classification:
        description = f"{description} ({classification})"
    return replace(
        base,
        status=EmailStatus.DELIVERY_FAILED,
        description=description,
        failure_category=category,
        reason=reason,
        smtp_code=smtp_code(reason) or _status_code(status),
    )
