"""Helpers shared by the provider modules.

They exist so that every provider fails the same way: a body that is not the
documented shape raises `MalformedPayload` naming the offending field, and an
authenticity problem raises `WebhookAuthError` saying what is wrong.
"""

from __future__ import annotations

import hmac
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from gateway.enums import FailureCategory
from gateway.errors import MalformedPayload, WebhookAuthError
from gateway.events import METADATA_KEY

__all__ = [
    "DEFAULT_TOLERANCE",
    "SPAM",
    "check_window",
    "constant_time_equals",
    "header_unix_time",
    "invalid_recipient",
    "iso_time",
    "load_json",
    "metadata_ref",
    "opt_list",
    "opt_obj",
    "opt_str",
    "req_list",
    "req_obj",
    "req_str",
    "ses_bounce_category",
    "smtp_code",
    "split_keys",
    "unix_time",
]

# A spam complaint's history line; the provider's name goes in {p}. A complaint is
# recorded as a delivery (it proves one) with the SPAM_COMPLAINT category.
SPAM = "The recipient reported the e-mail as spam; {p} no longer sends to the address"

# Signed timestamps further than this from "now" (either way) are refused.
DEFAULT_TOLERANCE = timedelta(minutes=5)


# --- JSON -------------------------------------------------------------------


def load_json(body: bytes) -> Any:
    """Decode a UTF-8 JSON body (NaN/Infinity refused), or raise MalformedPayload."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedPayload("body is not UTF-8 text") from exc
    try:
        return orjson.loads(body)  # strict JSON: NaN and Infinity are refused
    except (orjson.JSONDecodeError, RecursionError) as exc:
        raise MalformedPayload("body is not valid JSON") from exc


def _name(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def req_obj(obj: Mapping[str, Any], key: str, where: str = "") -> dict[str, Any]:
    value = obj.get(key)
    if value is None:
        raise MalformedPayload(f"missing field {_name(where, key)!r}")
    if not isinstance(value, dict):
        raise MalformedPayload(f"field {_name(where, key)!r} must be an object")
    return value


def opt_obj(obj: Mapping[str, Any], key: str, where: str = "") -> dict[str, Any] | None:
    if obj.get(key) is None:
        return None
    return req_obj(obj, key, where)


def req_list(obj: Mapping[str, Any], key: str, where: str = "") -> list[Any]:
    value = obj.get(key)
    if value is None:
        raise MalformedPayload(f"missing field {_name(where, key)!r}")
    if not isinstance(value, list):
        raise MalformedPayload(f"field {_name(where, key)!r} must be a list")
    return value


def opt_list(obj: Mapping[str, Any], key: str, where: str = "") -> list[Any] | None:
    if obj.get(key) is None:
        return None
    return req_list(obj, key, where)


def req_str(obj: Mapping[str, Any], key: str, where: str = "") -> str:
    """A required, non-empty string field."""
    value = obj.get(key)
    if value is None:
        raise MalformedPayload(f"missing field {_name(where, key)!r}")
    if not isinstance(value, str):
        raise MalformedPayload(f"field {_name(where, key)!r} must be a string")
    if not value:
        raise MalformedPayload(f"field {_name(where, key)!r} is empty")
    return value


def opt_str(obj: Mapping[str, Any], key: str, where: str = "") -> str | None:
    """An optional string field: absent or null gives None, another type is malformed."""
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedPayload(f"field {_name(where, key)!r} must be a string")
    return value


def metadata_ref(metadata: Mapping[str, Any] | None, where: str) -> str | None:
    """The gateway's e-mail id the sender put in the provider's custom metadata."""
    if metadata is None:
        return None
    value = metadata.get(METADATA_KEY)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise MalformedPayload(f"field {_name(where, METADATA_KEY)!r} must be a string")
    return value


def split_keys(base_key: str, recipients: list[str | None]) -> list[tuple[str, str | None]]:
    """Idempotency keys for one provider event that concerns several recipients.

    A single recipient keeps the provider's key as is; several get `key:recipient`
    so that each recipient's event is recorded once, and a retry maps to the
    same keys again.
    """
    if len(recipients) == 1:
        return [(base_key, recipients[0])]
    return [(f"{base_key}:{recipient}", recipient) for recipient in recipients]


# --- time -------------------------------------------------------------------


def unix_time(value: Any, field: str) -> datetime:
    """Seconds since the epoch (number or numeric string) as an aware UTC datetime."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise MalformedPayload(f"field {field!r} must be a Unix timestamp") from None
    if value is None:
        raise MalformedPayload(f"missing field {field!r}")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MalformedPayload(f"field {field!r} must be a Unix timestamp")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise MalformedPayload(f"field {field!r} is out of range") from None


def iso_time(value: Any, field: str) -> datetime:
    """An ISO 8601 date-time as an aware UTC datetime (no offset is read as UTC)."""
    if value is None:
        raise MalformedPayload(f"missing field {field!r}")
    if not isinstance(value, str):
        raise MalformedPayload(f"field {field!r} must be an ISO 8601 date-time")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise MalformedPayload(f"field {field!r} must be an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")


def header_unix_time(value: str | None, name: str) -> datetime:
    """A signed timestamp (whole seconds since the epoch) from a header or signature block."""
    if not value:
        raise WebhookAuthError(f"missing {name}")
    if not _UNIX_SECONDS.fullmatch(value):
        raise WebhookAuthError(f"{name} is not a Unix timestamp")
    return datetime.fromtimestamp(int(value), UTC)


def check_window(signed_at: datetime, now: datetime, tolerance: timedelta) -> None:
    """Refuse a signed timestamp too far in the past (replay) or in the future."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if signed_at < now - tolerance:
        raise WebhookAuthError("stale timestamp: the request was signed too long ago")
    if signed_at > now + tolerance:
        raise WebhookAuthError("timestamp is in the future")


def constant_time_equals(expected: str, given: str) -> bool:
    """Compare secrets or signatures without leaking where they differ."""
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))


# --- SMTP replies -----------------------------------------------------------

# "550 5.1.1 ...", "smtp; 550 ...", "550-5.1.1 ...": a basic reply code at the start.
_LEADING_CODE = re.compile(r"^\s*(?:smtp\s*;\s*)?([245]\d\d)(?=[\s-]|$)", re.I | re.A)
# "... said: 550 5.1.1 ...": a basic code inside the text, trusted only when an
# enhanced status code follows it (a bare number may be anything).
_EMBEDDED_CODE = re.compile(r"(?<![\d.])([245]\d\d)[\s-]+[245]\.\d{1,3}\.\d{1,3}(?![\d.])", re.A)
# RFC 3463 X.1.Y: the address itself is wrong (bad mailbox, bad domain, bad syntax, null MX).
_BAD_ADDRESS = re.compile(r"(?<![\d.])5\.1\.(?:0|1|2|3|10)(?![\d.])", re.A)


def smtp_code(*texts: str | None) -> int | None:
    """The SMTP reply code found in a provider's reason/response text, if any."""
    for text in texts:
        if not text:
            continue
        match = _LEADING_CODE.search(text) or _EMBEDDED_CODE.search(text)
        if match:
            return int(match.group(1))
    return None


def invalid_recipient(*texts: str | None) -> bool:
    """Whether a permanent failure says the address does not exist or is invalid."""
    return any(text and _BAD_ADDRESS.search(text) for text in texts)


# --- Amazon SES bounce types (Resend, built on SES, reports the same ones) ---

_SES_BOUNCES = {
    ("Permanent", "NoEmail"): FailureCategory.INVALID_RECIPIENT,
    ("Permanent", "Suppressed"): FailureCategory.DROPPED,
    ("Permanent", "OnAccountSuppressionList"): FailureCategory.DROPPED,
    ("Permanent", "UnsubscribedRecipient"): FailureCategory.DROPPED,
    ("Transient", "ContentRejected"): FailureCategory.BLOCKED,
    ("Transient", "AttachmentRejected"): FailureCategory.BLOCKED,
}
_SES_BOUNCE_TYPES = {
    "Permanent": FailureCategory.HARD_BOUNCE,
    # SES reports a transient bounce once it has stopped retrying.
    "Transient": FailureCategory.SOFT_BOUNCE,
}


def ses_bounce_category(bounce_type: str, sub_type: str | None) -> FailureCategory:
    """The category of an SES-style bounce (`bounceType`/`bounceSubType`)."""
    default = _SES_BOUNCE_TYPES.get(bounce_type, FailureCategory.OTHER)
    return _SES_BOUNCES.get((bounce_type, sub_type or ""), default)
