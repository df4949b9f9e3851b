"""Resend webhooks: signed like Svix signs them, shaped like Resend's documented payloads."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.enums import EmailStatus, FailureCategory
from gateway.errors import MalformedPayload, WebhookAuthError
from gateway.webhooks.providers import resend

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()
OTHER_SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()
SVIX_ID = "msg_2W2D3qXLS5fOaPja1GDg7rF2CwB"
EMAIL_ID = "56761188-7520-42d8-8898-ff6fc54ce618"


def svix_signature(secret: str, svix_id: str, timestamp: str, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{svix_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def sign(body: bytes, *, at: datetime = NOW, secret: str = SECRET, svix_id: str = SVIX_ID) -> dict[str, str]:
    """Headers as Svix sends them."""
    timestamp = str(int(at.timestamp()))
    return {
        "svix-id": svix_id,
        "svix-timestamp": timestamp,
        "svix-signature": svix_signature(secret, svix_id, timestamp, body),
        "content-type": "application/json",
    }


def event(kind: str, **data: Any) -> dict[str, Any]:
    """Shaped like the samples of Resend's webhook event pages."""
    return {
        "type": kind,
        "created_at": "2024-05-01T12:00:00.126Z",
        "data": {
            "broadcast_id": "8b146471-e88e-4322-86af-016cd36fd216",
            "created_at": "2024-05-01T11:59:58.894719+00:00",
            "email_id": EMAIL_ID,
            "from": "Invoices <invoices@example.org>",
            "to": ["client@example.com"],
            "subject": "Your invoice",
            "tags": {"gateway_email_id": "email-42", "category": "invoice"},
            **data,
        },
    }


BOUNCED = event(
    "email.bounced",
    bounce={
        "message": (
            "The recipient's email provider sent a hard bounce message: "
            "550 5.1.1 The email account that you tried to reach does not exist."
        ),
        "subType": "General",
        "type": "Permanent",
    },
)
BODY = json.dumps(BOUNCED).encode()


def parse_one(raw: dict[str, Any], svix_id: str = SVIX_ID) -> Any:
    events = resend.parse(json.dumps(raw).encode(), svix_id=svix_id)
    assert len(events) == 1
    return events[0]


def test_good_signature_is_accepted_and_parsed() -> None:
    resend.verify(headers=sign(BODY), body=BODY, secret=SECRET, now=NOW)
    (parsed,) = resend.parse(BODY, svix_id=SVIX_ID)
    assert parsed.source == "resend"
    assert parsed.key == SVIX_ID
    assert parsed.status is EmailStatus.DELIVERY_FAILED
    assert parsed.failure_category is FailureCategory.HARD_BOUNCE
    assert parsed.reason is not None
    assert parsed.reason.startswith("The recipient's email provider")
    assert parsed.smtp_code == 550
    assert parsed.occurred_at == datetime(2024, 5, 1, 12, 0, 0, 126000, tzinfo=UTC)
    assert (parsed.provider_message_id, parsed.email_ref) == (EMAIL_ID, "email-42")
    assert parsed.recipient == "client@example.com"


def test_any_matching_signature_of_several_is_enough() -> None:
    headers = sign(BODY)
    other = sign(BODY, secret=OTHER_SECRET)["svix-signature"]
    headers["svix-signature"] = f"v1a,ignored {other} {headers['svix-signature']}"
    resend.verify(headers=headers, body=BODY, secret=SECRET, now=NOW)


def test_forged_signature_is_refused() -> None:
    with pytest.raises(WebhookAuthError, match="bad signature"):
        resend.verify(headers=sign(BODY, secret=OTHER_SECRET), body=BODY, secret=SECRET, now=NOW)


def test_signature_of_another_version_is_refused() -> None:
    headers = sign(BODY)
    headers["svix-signature"] = headers["svix-signature"].replace("v1,", "v2,")
    with pytest.raises(WebhookAuthError, match="bad signature"):
        resend.verify(headers=headers, body=BODY, secret=SECRET, now=NOW)


def test_body_or_id_changed_after_signing_is_refused() -> None:
    headers = sign(BODY)
    tampered = BODY.replace(b"Permanent", b"Transient")
    with pytest.raises(WebhookAuthError, match="bad signature"):
        resend.verify(headers=headers, body=tampered, secret=SECRET, now=NOW)
    headers["svix-id"] = "msg_another"
    with pytest.raises(WebhookAuthError, match="bad signature"):
        resend.verify(headers=headers, body=BODY, secret=SECRET, now=NOW)


@settings(max_examples=60, deadline=None, database=None)
@given(st.data())
def test_any_single_byte_change_is_refused(data: st.DataObject) -> None:
    headers = sign(BODY)
    index = data.draw(st.integers(0, len(BODY) - 1))
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != BODY[index]))
    tampered = BODY[:index] + bytes([byte]) + BODY[index + 1 :]
    with pytest.raises(WebhookAuthError):
        resend.verify(headers=headers, body=tampered, secret=SECRET, now=NOW)


@pytest.mark.parametrize(
    ("signed_at", "message"),
    [
        (NOW - timedelta(minutes=5, seconds=1), "stale"),
        (NOW + timedelta(minutes=5, seconds=1), "future"),
    ],
)
def test_stale_and_future_timestamps_are_refused(signed_at: datetime, message: str) -> None:
    with pytest.raises(WebhookAuthError, match=message):
        resend.verify(headers=sign(BODY, at=signed_at), body=BODY, secret=SECRET, now=NOW)


@pytest.mark.parametrize("header", ["svix-id", "svix-timestamp", "svix-signature"])
def test_missing_headers_are_refused(header: str) -> None:
    headers = sign(BODY)
    del headers[header]
    with pytest.raises(WebhookAuthError, match=f"missing {header}"):
        resend.verify(headers=headers, body=BODY, secret=SECRET, now=NOW)


@pytest.mark.parametrize("secret", [None, "", "whsec_"])
def test_unconfigured_secret_refuses_a_well_signed_request(secret: str | None) -> None:
    with pytest.raises(WebhookAuthError, match="not configured"):
        resend.verify(headers=sign(BODY), body=BODY, secret=secret, now=NOW)


def test_invalid_secret_is_refused() -> None:
    with pytest.raises(WebhookAuthError, match="whsec_"):
        resend.verify(headers=sign(BODY), body=BODY, secret="whsec_%%%", now=NOW)


@pytest.mark.parametrize(
    ("bounce", "category"),
    [
        ({"type": "Permanent", "subType": "General"}, FailureCategory.HARD_BOUNCE),
        ({"type": "Permanent", "subType": "NoEmail"}, FailureCategory.INVALID_RECIPIENT),
        ({"type": "Permanent", "subType": "Suppressed"}, FailureCategory.DROPPED),
        ({"type": "Permanent", "subType": "OnAccountSuppressionList"}, FailureCategory.DROPPED),
        ({"type": "Transient", "subType": "MailboxFull"}, FailureCategory.SOFT_BOUNCE),
        ({"type": "Transient", "subType": "MessageTooLarge"}, FailureCategory.SOFT_BOUNCE),
        ({"type": "Transient", "subType": "ContentRejected"}, FailureCategory.BLOCKED),
        ({"type": "Transient", "subType": "AttachmentRejected"}, FailureCategory.BLOCKED),
        ({"type": "Undetermined", "subType": "Undetermined"}, FailureCategory.OTHER),
        ({"message": "The recipient's email provider sent a bounce."}, FailureCategory.OTHER),
        (None, FailureCategory.HARD_BOUNCE),
    ],
)
def test_bounce_types(bounce: dict[str, str] | None, category: FailureCategory) -> None:
    raw = event("email.bounced") if bounce is None else event("email.bounced", bounce=bounce)
    parsed = parse_one(raw)
    assert (parsed.status, parsed.failure_category) == (EmailStatus.DELIVERY_FAILED, category)


def test_delivery_delay_is_never_delivery_failed() -> None:
    parsed = parse_one(event("email.delivery_delayed"))
    assert parsed.status is EmailStatus.SENT
    assert parsed.failure_category is FailureCategory.SOFT_BOUNCE


def test_every_documented_event_type_maps() -> None:
    expected = {
        "email.sent": (EmailStatus.SENT, None),
        "email.scheduled": (EmailStatus.SENT, None),
        "email.delivered": (EmailStatus.DELIVERED, None),
        "email.delivery_delayed": (EmailStatus.SENT, FailureCategory.SOFT_BOUNCE),
        "email.complained": (EmailStatus.DELIVERED, FailureCategory.SPAM_COMPLAINT),
        "email.bounced": (EmailStatus.DELIVERY_FAILED, FailureCategory.HARD_BOUNCE),
        "email.failed": (EmailStatus.DELIVERY_FAILED, FailureCategory.OTHER),
        "email.suppressed": (EmailStatus.DELIVERY_FAILED, FailureCategory.DROPPED),
        "email.opened": (EmailStatus.OPENED, None),
        "email.clicked": (EmailStatus.SENT, None),
    }
    for kind, (status, category) in expected.items():
        parsed = parse_one(event(kind))
        assert (parsed.status, parsed.failure_category) == (status, category), kind
        assert parsed.description
    for kind in ("email.received", "domain.created", "contact.updated"):
        assert resend.parse(json.dumps(event(kind)).encode(), svix_id=SVIX_ID) == []


def test_failed_opened_clicked_details() -> None:
    failed = parse_one(event("email.failed", failed={"reason": "reached_daily_quota"}))
    assert failed.reason == "reached_daily_quota"
    suppressed = parse_one(event("email.suppressed", suppressed={"message": "On the list"}))
    assert suppressed.reason == "On the list"
    details = {"ipAddress": "192.168.1.101", "timestamp": "2024-05-01T12:00:00Z"}
    details["userAgent"] = "Mozilla/5.0"
    opened = parse_one(event("email.opened", open=details))
    assert (opened.user_agent, opened.ip, opened.machine_open) == (
        "Mozilla/5.0",
        "192.168.1.101",
        None,
    )
    clicked = parse_one(event("email.clicked", click={**details, "link": "https://example.com/p"}))
    assert (clicked.status, clicked.description) == (
        EmailStatus.SENT,
        "Clicked https://example.com/p",
    )
    assert clicked.ip == "192.168.1.101"


def test_tags_as_a_list_of_name_value_pairs() -> None:
    tags = [{"name": "category", "value": "invoice"}, {"name": "gateway_email_id", "value": "e-7"}]
    assert parse_one(event("email.sent", tags=tags)).email_ref == "e-7"
    assert parse_one(event("email.sent", tags=[])).email_ref is None
    assert parse_one(event("email.sent", tags=None)).email_ref is None


def test_several_recipients_give_one_event_each() -> None:
    to = ["Client <client@example.com>", "accounting@example.com", "client@example.com"]
    events = resend.parse(json.dumps(event("email.delivered", to=to)).encode(), svix_id=SVIX_ID)
    assert [(e.key, e.recipient) for e in events] == [
        (f"{SVIX_ID}:client@example.com", "client@example.com"),
        (f"{SVIX_ID}:accounting@example.com", "accounting@example.com"),
    ]


def _without(key: str) -> dict[str, Any]:
    raw = copy.deepcopy(BOUNCED)
    del raw["data"][key]
    return raw


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({**BOUNCED, "type": None}, "'type'"),
        ({**BOUNCED, "created_at": "tomorrow"}, "created_at"),
        ({**BOUNCED, "data": []}, "'data'"),
        (_without("email_id"), "data.email_id"),
        (_without("to"), "data.to"),
        (event("email.sent", to=[]), "data.to"),
        (event("email.sent", to=[3]), r"data.to\[0\]"),
        (event("email.sent", to=["a@x.org", "nobody"]), r"data.to\[1\]"),
        (event("email.sent", to="client@example.com"), "data.to"),
        (event("email.sent", tags="x"), "data.tags"),
        (event("email.sent", tags=["x"]), r"data.tags\[0\]"),
        (event("email.sent", tags={"gateway_email_id": 4}), "gateway_email_id"),
        (event("email.bounced", bounce="hard"), "data.bounce"),
        (event("email.bounced", bounce={"type": 1}), "data.bounce.type"),
        (event("email.clicked", click={"link": 5}), "data.click.link"),
    ],
)
def test_malformed_events_name_the_field(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(MalformedPayload, match=field):
        resend.parse(json.dumps(raw).encode(), svix_id=SVIX_ID)


@pytest.mark.parametrize("body", [b"not json", b"[]", b"1"])
def test_non_object_bodies_are_malformed(body: bytes) -> None:
    with pytest.raises(MalformedPayload):
        resend.parse(body, svix_id=SVIX_ID)


def test_missing_svix_id_is_malformed() -> None:
    with pytest.raises(MalformedPayload, match="svix-id"):
        resend.parse(BODY, svix_id="")
