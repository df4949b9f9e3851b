"""Postmark webhooks: basic auth like Postmark sends it, payloads like Postmark's samples."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.enums import EmailStatus, FailureCategory
from gateway.errors import MalformedPayload, WebhookAuthError
from gateway.webhooks.providers import postmark

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
USER, PASSWORD = "postmark-hook", "s3cr3t:with:colons"
MESSAGE_ID = "883953f4-6105-42a2-a16a-77a8eac79483"
METADATA = {"gateway_email_id": "email-42", "invoice": "F-2024-001"}


def basic(user: str = USER, password: str = PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"authorization": f"Basic {token}", "content-type": "application/json"}


def bounce(bounce_type: str, **extra: Any) -> dict[str, Any]:
    """Shaped like Postmark's bounce webhook sample."""
    return {
        "RecordType": "Bounce",
        "MessageStream": "outbound",
        "ID": 4323372036854775807,
        "Type": bounce_type,
        "TypeCode": 1,
        "Name": "Hard bounce",
        "Tag": "invoice",
        "MessageID": MESSAGE_ID,
        "Metadata": METADATA,
        "ServerID": 23,
        "Description": "The server was unable to deliver your message (ex: unknown user).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": "client@example.com",
        "From": "invoices@example.org",
        "BouncedAt": "2024-05-01T13:59:54.9070259+02:00",
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": True,
        "Subject": "Your invoice",
        "Content": "Return-Path: <>...",
        **extra,
    }


DELIVERY = {
    "RecordType": "Delivery",
    "ServerID": 23,
    "MessageStream": "outbound",
    "MessageID": MESSAGE_ID,
    "Recipient": "client@example.com",
    "Tag": "invoice",
    "DeliveredAt": "2024-05-01T11:59:54.9070259Z",
    "Details": "smtp;250 2.0.0 OK  1714564794 ffacd0b85a97d-34",
    "Metadata": METADATA,
}
OPEN = {
    "RecordType": "Open",
    "MessageStream": "outbound",
    "FirstOpen": True,
    "Client": {"Name": "Chrome 35.0.1916.153", "Company": "Google", "Family": "Chrome"},
    "OS": {"Name": "OS X 10.7 Lion", "Company": "Apple Computer, Inc.", "Family": "OS X 10"},
    "Platform": "WebMail",
    "UserAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_7_5)",
    "ReadSeconds": 5,
    "Geo": {"CountryISOCode": "RS", "Country": "Serbia", "City": "Novi Sad", "IP": "188.2.95.4"},
    "MessageID": MESSAGE_ID,
    "Metadata": METADATA,
    "ReceivedAt": "2024-05-01T12:00:00Z",
    "Tag": "invoice",
    "Recipient": "client@example.com",
}
CLICK = {
    **OPEN,
    "RecordType": "Click",
    "ClickLocation": "HTML",
    "OriginalLink": "https://example.com/invoice/42",
}
SPAM = {**bounce("SpamComplaint"), "RecordType": "SpamComplaint", "TypeCode": 512}
SUBSCRIPTION = {
    "RecordType": "SubscriptionChange",
    "MessageID": MESSAGE_ID,
    "ServerID": 23,
    "MessageStream": "outbound",
    "ChangedAt": "2024-05-01T12:00:00.416071Z",
    "Recipient": "client@example.com",
    "Origin": "Recipient",
    "SuppressSending": True,
    "SuppressionReason": "ManualSuppression",
    "Tag": "invoice",
    "Metadata": METADATA,
}


def parse_one(raw: dict[str, Any]) -> Any:
    events = postmark.parse(json.dumps(raw).encode())
    assert len(events) == 1
    return events[0]


def test_good_credentials_are_accepted() -> None:
    body = json.dumps(DELIVERY).encode()
    postmark.verify(headers=basic(), body=body, username=USER, password=PASSWORD, now=NOW)


def test_scheme_is_case_insensitive() -> None:
    headers = basic()
    headers["authorization"] = headers["authorization"].replace("Basic", "basic")
    postmark.verify(headers=headers, body=b"{}", username=USER, password=PASSWORD, now=NOW)


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        (basic(password="wrong"), "wrong credentials"),
        (basic(user="someone"), "wrong credentials"),
        (basic(password=PASSWORD + "x"), "wrong credentials"),
        ({"authorization": "Basic " + base64.b64encode(b"no-colon").decode()}, "wrong"),
        ({}, "missing Authorization"),
        ({"authorization": "Bearer abc"}, "not basic auth"),
        ({"authorization": "Basic"}, "not basic auth"),
        ({"authorization": "Basic %%%"}, "malformed"),
        ({"authorization": "Basic " + base64.b64encode(b"\xff:\xfe").decode()}, "malformed"),
    ],
)
def test_wrong_or_missing_credentials_are_refused(headers: dict[str, str], message: str) -> None:
    with pytest.raises(WebhookAuthError, match=message):
        postmark.verify(headers=headers, body=b"{}", username=USER, password=PASSWORD, now=NOW)


@settings(max_examples=60, deadline=None, database=None)
@given(st.text(min_size=1, max_size=40))
def test_any_other_password_is_refused(password: str) -> None:
    if password == PASSWORD:
        return
    with pytest.raises(WebhookAuthError):
        postmark.verify(headers=basic(password=password), body=b"{}", username=USER, password=PASSWORD, now=NOW)


@pytest.mark.parametrize(("user", "password"), [(None, PASSWORD), (USER, None), ("", ""), (USER, "")])
def test_unconfigured_credentials_refuse_even_good_ones(user: str | None, password: str | None) -> None:
    with pytest.raises(WebhookAuthError, match="not configured"):
        postmark.verify(headers=basic(), body=b"{}", username=user, password=password, now=NOW)


def expected_key(record_type: str, recipient: str, at: datetime) -> str:
    source = "\n".join((record_type, MESSAGE_ID, recipient, at.isoformat()))
    return hashlib.sha256(source.encode()).hexdigest()


def test_delivery() -> None:
    event = parse_one(DELIVERY)
    at = datetime(2024, 5, 1, 11, 59, 54, 907025, tzinfo=UTC)
    assert event.source == "postmark"
    assert event.key == expected_key("Delivery", "client@example.com", at)
    assert (event.status, event.occurred_at, event.smtp_code) == (EmailStatus.DELIVERED, at, 250)
    assert event.provider_message_id == MESSAGE_ID
    assert (event.email_ref, event.recipient) == ("email-42", "client@example.com")


def test_hard_bounce_to_a_missing_mailbox() -> None:
    event = parse_one(bounce("HardBounce"))
    at = datetime(2024, 5, 1, 11, 59, 54, 907025, tzinfo=UTC)  # +02:00 converted to UTC
    assert event.occurred_at == at
    assert event.key == expected_key("Bounce", "client@example.com", at)
    assert event.status is EmailStatus.DELIVERY_FAILED
    assert event.failure_category is FailureCategory.INVALID_RECIPIENT
    assert event.smtp_code == 550
    assert event.reason == "smtp;550 5.1.1 The email account that you tried to reach does not exist."
    assert (event.email_ref, event.provider_message_id) == ("email-42", MESSAGE_ID)


@pytest.mark.parametrize(
    ("bounce_type", "status", "category"),
    [
        ("HardBounce", EmailStatus.DELIVERY_FAILED, FailureCategory.HARD_BOUNCE),
        ("SoftBounce", EmailStatus.DELIVERY_FAILED, FailureCategory.SOFT_BOUNCE),
        ("Transient", EmailStatus.SENT, FailureCategory.SOFT_BOUNCE),
        ("DnsError", EmailStatus.SENT, FailureCategory.SOFT_BOUNCE),
        ("BadEmailAddress", EmailStatus.DELIVERY_FAILED, FailureCategory.INVALID_RECIPIENT),
        ("Blocked", EmailStatus.DELIVERY_FAILED, FailureCategory.BLOCKED),
        ("SpamNotification", EmailStatus.DELIVERY_FAILED, FailureCategory.BLOCKED),
        ("VirusNotification", EmailStatus.DELIVERY_FAILED, FailureCategory.BLOCKED),
        ("DMARCPolicy", EmailStatus.DELIVERY_FAILED, FailureCategory.BLOCKED),
        ("SpamComplaint", EmailStatus.DELIVERED, FailureCategory.SPAM_COMPLAINT),
        ("ManuallyDeactivated", EmailStatus.DELIVERY_FAILED, FailureCategory.DROPPED),
        ("Unconfirmed", EmailStatus.DELIVERY_FAILED, FailureCategory.DROPPED),
        ("Unknown", EmailStatus.DELIVERY_FAILED, FailureCategory.OTHER),
        ("SMTPApiError", EmailStatus.DELIVERY_FAILED, FailureCategory.OTHER),
        ("TemplateRenderingFailed", EmailStatus.DELIVERY_FAILED, FailureCategory.OTHER),
        ("SomethingNew", EmailStatus.DELIVERY_FAILED, FailureCategory.OTHER),
        ("AutoResponder", EmailStatus.SENT, None),
        ("AddressChange", EmailStatus.SENT, None),
        ("ChallengeVerification", EmailStatus.SENT, None),
        ("OpenRelayTest", EmailStatus.SENT, None),
        ("Subscribe", EmailStatus.SENT, None),
        ("Unsubscribe", EmailStatus.SENT, None),
        ("InboundError", EmailStatus.SENT, None),
    ],
)
def test_bounce_types(bounce_type: str, status: EmailStatus, category: FailureCategory | None) -> None:
    details = "smtp;554 5.7.1 rejected" if bounce_type == "HardBounce" else "smtp;452 4.2.2 full"
    event = parse_one(bounce(bounce_type, Details=details))
    assert (event.status, event.failure_category) == (status, category)
    assert event.description
    if category is not None:
        assert event.reason == details
        assert event.smtp_code == (554 if bounce_type == "HardBounce" else 452)


def test_temporary_failures_are_never_delivery_failed() -> None:
    for bounce_type in ("Transient", "DnsError"):
        event = parse_one(bounce(bounce_type, Details="smtp;421 4.4.0 try later"))
        assert event.status is not EmailStatus.DELIVERY_FAILED
        assert (event.reason, event.smtp_code) == ("smtp;421 4.4.0 try later", 421)


def test_spam_complaint_open_click_subscription() -> None:
    spam = parse_one(SPAM)  # a complaint proves delivery
    assert (spam.status, spam.failure_category) == (
        EmailStatus.DELIVERED,
        FailureCategory.SPAM_COMPLAINT,
    )
    assert spam.key != parse_one(bounce("SpamComplaint")).key  # RecordType is in the key

    opened = parse_one(OPEN)
    assert opened.status is EmailStatus.OPENED
    assert opened.machine_open is None
    assert (opened.user_agent, opened.ip) == (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_7_5)",
        "188.2.95.4",
    )
    assert opened.occurred_at == NOW

    clicked = parse_one(CLICK)
    assert (clicked.status, clicked.description) == (
        EmailStatus.SENT,
        "Clicked https://example.com/invoice/42",
    )
    assert clicked.key != opened.key

    change = parse_one(SUBSCRIPTION)
    assert (change.status, change.failure_category) == (EmailStatus.SENT, None)
    assert "ManualSuppression" in change.description
    resubscribed = parse_one({**SUBSCRIPTION, "SuppressSending": False, "SuppressionReason": None})
    assert "reactivated" in resubscribed.description


def test_open_with_empty_geo_and_other_record_types() -> None:
    assert parse_one({**OPEN, "Geo": {}}).ip is None
    assert postmark.parse(json.dumps({**DELIVERY, "RecordType": "Inbound"}).encode()) == []


def test_every_documented_record_type_maps() -> None:
    for raw in (DELIVERY, bounce("HardBounce"), SPAM, OPEN, CLICK, SUBSCRIPTION):
        assert parse_one(raw).description


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({**DELIVERY, "RecordType": None}, "RecordType"),
        ({**DELIVERY, "MessageID": 5}, "MessageID"),
        ({**DELIVERY, "Recipient": None}, "Recipient"),
        ({**DELIVERY, "DeliveredAt": "yesterday"}, "DeliveredAt"),
        ({**DELIVERY, "DeliveredAt": None}, "DeliveredAt"),
        ({**DELIVERY, "Metadata": ["x"]}, "Metadata"),
        ({**DELIVERY, "Metadata": {"gateway_email_id": 42}}, "gateway_email_id"),
        ({**DELIVERY, "Details": 3}, "Details"),
        (bounce("HardBounce", Email=None), "Email"),
        (bounce("HardBounce", BouncedAt=1714564800), "BouncedAt"),
        ({k: v for k, v in bounce("HardBounce").items() if k != "Type"}, "Type"),
        ({**OPEN, "Geo": "Serbia"}, "Geo"),
        ({**OPEN, "UserAgent": 1}, "UserAgent"),
        ({**SUBSCRIPTION, "SuppressSending": "yes"}, "SuppressSending"),
    ],
)
def test_malformed_events_name_the_field(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(MalformedPayload, match=field):
        postmark.parse(json.dumps(raw).encode())


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b"null"])
def test_non_object_bodies_are_malformed(body: bytes) -> None:
    with pytest.raises(MalformedPayload):
        postmark.parse(body)
