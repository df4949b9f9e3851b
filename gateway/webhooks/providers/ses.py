"""Amazon SES events delivered by Amazon SNS: SNS signature check and parsing.

SNS posts an envelope (`Type` Notification, SubscriptionConfirmation or
UnsubscribeConfirmation) signed with RSA: SignatureVersion 1 is SHA1withRSA,
2 is SHA256withRSA, over "Key\\nValue\\n" pairs of the documented fields in the
documented order. The signing certificate is fetched (https only, from
`sns.<region>.amazonaws.com[.cn]`, a `.pem` path) and cached by URL. The
`TopicArn` must be one the gateway subscribed to. A Notification's `Message`
is the SES event as a JSON string, with `eventType` (event publishing through a
configuration set) or `notificationType` (identity notifications).

Keys: the SNS `MessageId` (SNS keeps it across retries); an SES event naming
several recipients gives one IncomingEvent per recipient, keyed
`MessageId:recipient`. provider_message_id = `mail.messageId`, email_ref =
`mail.tags.gateway_email_id[0]` (tag values are lists).

| SES event | status | failure_category | recipients |
|---|---|---|---|
| Send | SENT | | `mail.destination` |
| Delivery | DELIVERED | | `delivery.recipients` |
| DeliveryDelay | SENT | SOFT_BOUNCE | `deliveryDelay.delayedRecipients` |
| Bounce Permanent | DELIVERY_FAILED | HARD_BOUNCE (1) | `bounce.bouncedRecipients` |
| Bounce Permanent NoEmail | DELIVERY_FAILED | INVALID_RECIPIENT | idem |
| Bounce Permanent Suppressed (2) | DELIVERY_FAILED | DROPPED | idem |
| Bounce Transient | DELIVERY_FAILED | SOFT_BOUNCE (3) | idem |
| Bounce Transient Content/AttachmentRejected | DELIVERY_FAILED | BLOCKED | idem |
| Bounce Undetermined | DELIVERY_FAILED | OTHER | idem |
| Complaint | DELIVERED | SPAM_COMPLAINT (4) | `complaint.complainedRecipients` |
| Reject | DELIVERY_FAILED | BLOCKED | `mail.destination` (virus) |
| Rendering Failure | DELIVERY_FAILED | OTHER | `mail.destination` (template) |
| Open | OPENED | | (5) |
| Click | SENT | | (5), history only (6) |
| Subscription | SENT | | (5), history only |
| AmazonSnsSubscriptionSucceeded, other | dropped | | |

(1) INVALID_RECIPIENT when the recipient's `status`/`diagnosticCode` says 5.1.x.
(2) also OnAccountSuppressionList and UnsubscribedRecipient: SES did not send.
(3) SES reports a transient bounce only once it has stopped retrying; a delay it
still retries is a DeliveryDelay.
(4) a complaint proves delivery, it is no failure; SES's account-level suppression
list (on by default) takes the address. One whose `complaintFeedbackType` is
"not-spam" is SENT history.
(5) the message's only destination, or None when it had several: SES does not say
which recipient opened or clicked. User agent and IP from `userAgent`, `ipAddress`;
SES has no machine-open flag.
(6) "Clicked <link>". Link scanners click too, so a click is not counted as an open.
Times: the event object's `timestamp`, or `mail.timestamp` for Send, Reject and
Rendering Failure. Reasons: `diagnosticCode`, `reject.reason`, `failure.errorMessage`;
SMTP codes from `diagnosticCode` and `delivery.smtpResponse`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Awaitable, Callable, Collection
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from gateway.enums import EmailStatus, FailureCategory
from gateway.errors import MalformedPayload, WebhookAuthError
from gateway.events import METADATA_KEY, IncomingEvent
from gateway.webhooks.providers._common import (
    SPAM,
    invalid_recipient,
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

__all__ = ["NAME", "CertificateStore", "CertificateUnavailable", "parse", "parse_envelope", "subscribe_url", "verify"]

NAME = "ses"

_TYPES = {"Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"}
_SIGNED_NOTIFICATION = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_SIGNED_SUBSCRIPTION = (
    "Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type",
)  # fmt: skip
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
_SNS_HOST = re.compile(r"sns\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?")
# A publish time this far ahead of our clock is refused as forged.
_CLOCK_SKEW = timedelta(minutes=5)

Fetch = Callable[[str], Awaitable[bytes]]


def _is_sns_url(url: str, *, certificate: bool = False) -> bool:
    """https on the default port, on an `sns.<region>.amazonaws.com[.cn]` host, no userinfo;
    for a certificate also a `.pem` path and no query."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return (
        parts.scheme == "https"
        and port in (None, 443)
        and parts.username is None
        and parts.hostname is not None
        and _SNS_HOST.fullmatch(parts.hostname) is not None
        and not parts.fragment
        and (not certificate or (parts.path.endswith(".pem") and not parts.query))
    )


async def _httpx_fetch(url: str, transport: httpx.AsyncBaseTransport | None = None) -> bytes:
    async with httpx.AsyncClient(transport=transport, timeout=5.0, follow_redirects=False) as client:
        response = await client.get(url)
        response.raise_for_status()
        return response.content


class CertificateUnavailable(Exception):
    """The signing certificate could not be fetched now (network, timeout, AWS 5xx):
    the message may be genuine, so SNS must retry it rather than be refused."""


class CertificateStore:
    """Fetches SNS signing certificates from AWS only, and caches them by URL.

    A URL that is not https on an SNS host with a `.pem` path is refused before
    anything is fetched, so a forged envelope cannot make the gateway fetch (or
    trust) a certificate from elsewhere. The HTTP transport (or the whole `fetch`)
    is a collaborator, so tests point it at a local server.

    A certificate that cannot be fetched now raises `CertificateUnavailable`
    (answered 503: SNS retries), never `WebhookAuthError` (401: SNS drops the
    message for good); AWS answering 4xx for the URL is a refusal.
    """

    def __init__(self, fetch: Fetch | None = None, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        if fetch is None:
            fetch = _httpx_fetch if transport is None else functools.partial(_httpx_fetch, transport=transport)
        self._fetch = fetch
        self._cache: dict[str, x509.Certificate] = {}

    async def get(self, url: str) -> x509.Certificate:
        if not _is_sns_url(url, certificate=True):
            raise WebhookAuthError("SigningCertURL is not an Amazon SNS certificate URL")
        cached = self._cache.get(url)
        if cached is not None:
            return cached
        try:
            pem = await self._fetch(url)
        except httpx.HTTPStatusError as exc:
            code = exc.response.status_code
            if code >= 500 or code == 429:
                raise CertificateUnavailable(f"fetching the SNS signing certificate: AWS answered {code}") from exc
            raise WebhookAuthError(f"the SNS signing certificate URL answered {code}") from exc
        except (httpx.TransportError, OSError, TimeoutError) as exc:
            raise CertificateUnavailable("could not fetch the SNS signing certificate") from exc
        try:
            certificate = x509.load_pem_x509_certificate(pem)
        except ValueError as exc:
            raise WebhookAuthError("the SNS signing certificate is not a PEM certificate") from exc
        self._cache[url] = certificate
        return certificate


def parse_envelope(body: bytes) -> dict[str, Any]:
    """Parse and shape-check the SNS envelope (raw message delivery is not supported)."""
    envelope = load_json(body)
    if not isinstance(envelope, dict):
        raise MalformedPayload("body must be a JSON object (an SNS envelope)")
    kind = req_str(envelope, "Type")
    if kind not in _TYPES:
        raise MalformedPayload(f"field 'Type' has an unknown value {kind!r}")
    required = ["MessageId", "TopicArn", "Message", "Timestamp", "SignatureVersion", "Signature"]
    required += ["SigningCertURL"] + (["Token", "SubscribeURL"] if kind != "Notification" else [])
    for key in required:
        req_str(envelope, key)
    opt_str(envelope, "Subject")
    iso_time(envelope["Timestamp"], "Timestamp")
    return envelope


def string_to_sign(envelope: dict[str, Any]) -> bytes:
    """The canonical text SNS signs: "Key\\nValue\\n" for each documented field, in order."""
    keys = _SIGNED_NOTIFICATION if envelope["Type"] == "Notification" else _SIGNED_SUBSCRIPTION
    pairs = [(key, envelope.get(key)) for key in keys]
    return "".join(f"{key}\n{value}\n" for key, value in pairs if value is not None).encode()


def verify_signature(envelope: dict[str, Any], certificate: x509.Certificate) -> None:
    """Check the envelope's RSA signature with the signing certificate's public key."""
    algorithm = _HASHES.get(envelope["SignatureVersion"])
    if algorithm is None:
        raise WebhookAuthError("unsupported SignatureVersion")
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise WebhookAuthError("the SNS signing certificate does not hold an RSA key")
    try:
        signature = base64.b64decode(envelope["Signature"], validate=True)
        key.verify(signature, string_to_sign(envelope), padding.PKCS1v15(), algorithm())
    except (InvalidSignature, binascii.Error, ValueError):
        raise WebhookAuthError("bad signature") from None


async def verify(
    *,
    envelope: dict[str, Any],
    allowed_topic_arns: Collection[str],
    certificates: CertificateStore,
    now: datetime,
    max_age: timedelta = timedelta(hours=1),
) -> None:
    """Check an envelope from `parse_envelope`: topic, age, certificate and signature.

    SNS's `Timestamp` is when the message was published and stays the same on
    every retry, and a topic's delivery policy can spread HTTPS retries over up
    to an hour (the most SNS allows), so the 5-minute window the other providers
    use would refuse legitimate retries. `max_age` bounds replays instead; a
    replay inside it is deduplicated by its MessageId.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if not allowed_topic_arns:
        raise WebhookAuthError("SNS topic ARNs are not configured")
    if envelope["TopicArn"] not in allowed_topic_arns:
        raise WebhookAuthError("TopicArn is not one this gateway subscribed to")
    if envelope["SignatureVersion"] not in _HASHES:
        raise WebhookAuthError("unsupported SignatureVersion")
    published = iso_time(envelope["Timestamp"], "Timestamp")
    if published < now - max_age:
        raise WebhookAuthError("stale timestamp: the message was published too long ago")
    if published > now + _CLOCK_SKEW:
        raise WebhookAuthError("timestamp is in the future")
    certificate = await certificates.get(envelope["SigningCertURL"])
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise WebhookAuthError("the SNS signing certificate is not valid now")
    verify_signature(envelope, certificate)


def subscribe_url(envelope: dict[str, Any]) -> str | None:
    """The URL to GET to confirm a SubscriptionConfirmation (None for other types)."""
    if envelope["Type"] != "SubscriptionConfirmation":
        return None
    url = envelope["SubscribeURL"]
    if not isinstance(url, str) or not _is_sns_url(url):
        raise MalformedPayload("field 'SubscribeURL' is not an Amazon SNS https URL")
    return url


def parse(envelope: dict[str, Any]) -> list[IncomingEvent]:
    """Turn a Notification envelope's SES event into IncomingEvents (see the table above)."""
    if envelope["Type"] != "Notification":
        return []
    raw = load_json(envelope["Message"].encode("utf-8"))
    if not isinstance(raw, dict):
        raise MalformedPayload("field 'Message' must hold a JSON object")
    kind = raw.get("eventType", raw.get("notificationType"))
    if not isinstance(kind, str) or not kind:
        raise MalformedPayload("missing field 'Message.eventType'")
    if kind not in _DETAIL:
        return []
    mail = req_obj(raw, "mail", "Message")
    message_id = req_str(mail, "messageId", "Message.mail")
    where = f"Message.{_DETAIL[kind]}"
    if kind in _WHOLE_MESSAGE:  # no own timestamp: the event is about the message as sent
        detail = opt_obj(raw, _DETAIL[kind], "Message") or {}
        occurred_at = iso_time(mail.get("timestamp"), "Message.mail.timestamp")
    else:
        detail = req_obj(raw, _DETAIL[kind], "Message")
        occurred_at = iso_time(detail.get("timestamp"), f"{where}.timestamp")
    items: dict[str | None, dict[str, Any]] = {}
    for recipient, fields in _items(kind, detail, where, mail):
        items.setdefault(recipient, fields)  # a recipient listed twice is one event
    tags = opt_obj(mail, "tags", "Message.mail") or {}
    ref = tags.get(METADATA_KEY)
    email_ref = metadata_ref({METADATA_KEY: ref[0] if isinstance(ref, list) and ref else ref}, "Message.mail.tags")
    return [
        IncomingEvent(
            source=NAME,
            key=key,
            occurred_at=occurred_at,
            provider_message_id=message_id,
            email_ref=email_ref,
            recipient=recipient,
            **items[recipient],
        )
        for key, recipient in split_keys(envelope["MessageId"], list(items))
    ]


# SES event type -> the object holding its details.
_DETAIL = {"Rendering Failure": "failure", "RenderingFailure": "failure"}
_DETAIL["DeliveryDelay"] = "deliveryDelay"
_DETAIL |= {kind: kind.lower() for kind in ("Send", "Reject", "Delivery", "Bounce")}
_DETAIL |= {kind: kind.lower() for kind in ("Complaint", "Open", "Click", "Subscription")}
_WHOLE_MESSAGE = {"Send", "Reject", "Rendering Failure", "RenderingFailure"}
_FAILED = EmailStatus.DELIVERY_FAILED
_Items = list[tuple[str | None, dict[str, Any]]]


def _items(kind: str, detail: dict[str, Any], where: str, mail: dict[str, Any]) -> _Items:
    """(recipient, IncomingEvent fields) for each recipient the SES event concerns."""
    if kind in {"Bounce", "DeliveryDelay", "Complaint"}:
        return _recipient_items(kind, detail, where)
    fields: dict[str, Any]
    if kind == "Delivery":
        response = opt_str(detail, "smtpResponse", where)
        fields = {"status": EmailStatus.DELIVERED, "smtp_code": smtp_code(response)}
        fields["description"] = "Delivered to the receiving server"
        recipients = _addresses(req_list(detail, "recipients", where), f"{where}.recipients")
        return [(address, fields) for address in recipients]
    destinations = req_list(mail, "destination", "Message.mail")
    destination = _addresses(destinations, "Message.mail.destination")
    if kind in {"Open", "Click", "Subscription"}:
        link = opt_str(detail, "link", where)
        fields = {
            "status": EmailStatus.OPENED if kind == "Open" else EmailStatus.SENT,
            "description": {
                "Open": "Opened (tracking image fetched)",
                "Click": f"Clicked {link}" if link else "Clicked a link",
            }.get(kind, "Subscription preferences changed"),
            "user_agent": opt_str(detail, "userAgent", where),
            "ip": opt_str(detail, "ipAddress", where),
        }
        return [(destination[0] if len(destination) == 1 else None, fields)]
    if kind == "Send":
        fields = {"status": EmailStatus.SENT, "description": "Accepted by SES for delivery"}
    elif kind == "Reject":
        fields = {
            "status": _FAILED,
            "failure_category": FailureCategory.BLOCKED,
            "description": "Rejected by SES (virus found), not sent",
            "reason": opt_str(detail, "reason", where),
        }
    else:  # Rendering Failure
        fields = {
            "status": _FAILED,
            "failure_category": FailureCategory.OTHER,
            "description": "Not sent: the template could not be rendered",
            "reason": opt_str(detail, "errorMessage", where),
        }
    return [(address, fields) for address in destination]


def _recipient_items(kind: str, detail: dict[str, Any], where: str) -> _Items:
    """Bounce, DeliveryDelay and Complaint list their recipients with per-recipient details."""
    list_key = {"Bounce": "bouncedRecipients", "DeliveryDelay": "delayedRecipients"}.get(kind, "complainedRecipients")
    entries = req_list(detail, list_key, where)
    if not entries:
        raise MalformedPayload(f"field '{where}.{list_key}' is empty")
    items: _Items = []
    for index, entry in enumerate(entries):
        at = f"{where}.{list_key}[{index}]"
        if not isinstance(entry, dict):
            raise MalformedPayload(f"field {at!r} must be an object")
        address = req_str(entry, "emailAddress", at)
        diagnostic = opt_str(entry, "diagnosticCode", at)
        fields: dict[str, Any] = {"smtp_code": smtp_code(diagnostic)}
        if kind == "Bounce":
            bounce_type = req_str(detail, "bounceType", where)
            sub_type = opt_str(detail, "bounceSubType", where) or "unknown"
            category = ses_bounce_category(bounce_type, sub_type)
            if category is FailureCategory.HARD_BOUNCE and invalid_recipient(opt_str(entry, "status", at), diagnostic):
                category = FailureCategory.INVALID_RECIPIENT
            fields.update(status=_FAILED, failure_category=category)
            fields["description"] = f"Bounced ({bounce_type}/{sub_type})"
            fields["reason"] = diagnostic or f"{bounce_type}/{sub_type}"
        elif kind == "DeliveryDelay":
            delay_type = opt_str(detail, "delayType", where)
            fields.update(status=EmailStatus.SENT, failure_category=FailureCategory.SOFT_BOUNCE)
            fields["description"] = f"Delivery delayed ({delay_type or 'unknown'}), SES will retry"
            fields["reason"] = diagnostic or delay_type
        elif opt_str(detail, "complaintFeedbackType", where) == "not-spam":
            fields.update(status=EmailStatus.SENT, description="Marked as not spam")
        else:
            fields.update(status=EmailStatus.DELIVERED, failure_category=FailureCategory.SPAM_COMPLAINT)
            fields["description"] = SPAM.format(p="SES")
            fields["reason"] = opt_str(detail, "complaintFeedbackType", where)
        items.append((address, fields))
    return items


def _addresses(values: list[Any], field: str) -> list[str]:
    if not values or not all(isinstance(value, str) and value for value in values):
        raise MalformedPayload(f"field {field!r} must be a non-empty list of addresses")
    return [str(value) for value in values]
