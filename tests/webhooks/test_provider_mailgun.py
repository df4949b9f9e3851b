"""Mailgun webhooks: signed like Mailgun signs, shaped like Mailgun's documented payloads."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.enums import EmailStatus, FailureCategory
from gateway.errors import MalformedPayload, WebhookAuthError
from gateway.webhooks.providers import mailgun

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
SIGNING_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
TOKEN = "e0b5477167110d68991efc6b9f89f0a11066af27834600e123"


def signed(
    event_data: dict[str, Any],
    *,
    at: datetime = NOW,
    key: str = SIGNING_KEY,
    token: str = TOKEN,
) -> bytes:
    """A webhook body signed like Mailgun: hex HMAC-SHA256 of timestamp + token."""
    timestamp = str(int(at.timestamp()))
    digest = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    signature = {"token": token, "timestamp": timestamp, "signature": digest}
    return json.dumps({"signature": signature, "event-data": event_data}).encode()


def event_data(event: str, **extra: Any) -> dict[str, Any]:
    """Shaped like the "Delivered Event" sample of Mailgun's Webhook Payloads page."""
    data: dict[str, Any] = {
        "account": {"id": "1234567890303a4bd1f33898"},
        "domain": {"name": "mg.example.com"},
        "envelope": {
            "sender": "invoices@mg.example.com",
            "targets": "client@example.com",
            "transport": "smtp",
            "sending-ip": "209.61.154.250",
        },
        "event": event,
        "flags": {"is-authenticated": True, "is-test-mode": False},
        "id": "CCXMjJ7nQi2N3BPigGOdgQ",
        "log-level": "info",
        "message": {
            "headers": {
                "from": "Invoices <invoices@mg.example.com>",
                "message-id": "20240501115959.abc123@mg.example.com",
                "subject": "Your invoice",
                "to": "client@example.com",
            },
            "attachments": [],
            "size": 341,
        },
        "recipient": "client@example.com",
        "recipient-domain": "example.com",
        "tags": ["invoice"],
        "timestamp": 1714564800.372891,
        "user-variables": {"gateway_email_id": "email-42"},
    }
    data.update(extra)
    return data


DELIVERED = event_data(
    "delivered",
    **{
        "delivery-status": {
            "tls": True,
            "mx-host": "mx.example.com",
            "attempt-no": 1,
            "description": "",
            "session-seconds": 0.43,
            "utf8": True,
            "code": 250,
            "message": "OK",
            "certificate-verified": True,
        }
    },
)
BODY = signed(DELIVERED)


def parse_one(data: dict[str, Any]) -> Any:
    events = mailgun.parse(signed(data))
    assert len(events) == 1
    return events[0]


def test_good_signature_is_accepted_and_parsed() -> None:
    mailgun.verify(headers={}, body=BODY, signing_key=SIGNING_KEY, now=NOW)
    (event,) = mailgun.parse(BODY)
    assert event.source == "mailgun"
    assert event.key == TOKEN
    assert event.status is EmailStatus.DELIVERED
    assert event.smtp_code == 250
    assert event.failure_category is None
    assert event.occurred_at == datetime(2024, 5, 1, 12, 0, 0, 372891, tzinfo=UTC)
    assert event.provider_message_id == "20240501115959.abc123@mg.example.com"
    assert event.email_ref == "email-42"
    assert event.recipient == "client@example.com"


def test_parent_signature_of_a_subaccount_is_accepted() -> None:
    payload = json.loads(signed(DELIVERED, key="subaccount-key"))
    timestamp, token = payload["signature"]["timestamp"], payload["signature"]["token"]
    parent = hmac.new(SIGNING_KEY.encode(), (timestamp + token).encode(), hashlib.sha256)
    payload["signature"]["parent-signature"] = parent.hexdigest()
    body = json.dumps(payload).encode()
    mailgun.verify(headers={}, body=body, signing_key=SIGNING_KEY, now=NOW)


def test_integer_timestamp_is_accepted() -> None:
    payload = json.loads(BODY)
    payload["signature"]["timestamp"] = int(payload["signature"]["timestamp"])
    mailgun.verify(headers={}, body=json.dumps(payload).encode(), signing_key=SIGNING_KEY, now=NOW)


def test_forged_signature_is_refused() -> None:
    body = signed(DELIVERED, key="someone else's key")
    with pytest.raises(WebhookAuthError, match="bad signature"):
        mailgun.verify(headers={}, body=body, signing_key=SIGNING_KEY, now=NOW)


def test_token_changed_after_signing_is_refused() -> None:
    payload = json.loads(BODY)
    payload["signature"]["token"] = "f" * 50
    with pytest.raises(WebhookAuthError, match="bad signature"):
        mailgun.verify(headers={}, body=json.dumps(payload).encode(), signing_key=SIGNING_KEY, now=NOW)


@settings(max_examples=60, deadline=None, database=None)
@given(st.data())
def test_any_single_byte_change_to_the_signature_block_is_refused(data: st.DataObject) -> None:
    # Mailgun signs timestamp + token only: those are the bytes whose change must be refused.
    payload = json.loads(BODY)
    block = payload["signature"]
    field = data.draw(st.sampled_from(["timestamp", "token", "signature"]))
    value = block[field]
    index = data.draw(st.integers(0, len(value) - 1))
    char = data.draw(st.characters(codec="ascii").filter(lambda c: c != value[index]))
    block[field] = value[:index] + char + value[index + 1 :]
    body = json.dumps(payload).encode()
    with pytest.raises(WebhookAuthError):
        mailgun.verify(headers={}, body=body, signing_key=SIGNING_KEY, now=NOW)


@pytest.mark.parametrize(
    ("signed_at", "message"),
    [
        (NOW - timedelta(minutes=5, seconds=1), "stale"),
        (NOW + timedelta(minutes=5, seconds=1), "future"),
    ],
)
def test_stale_and_future_timestamps_are_refused(signed_at: datetime, message: str) -> None:
    body = signed(DELIVERED, at=signed_at)
    with pytest.raises(WebhookAuthError, match=message):
        mailgun.verify(headers={}, body=body, signing_key=SIGNING_KEY, now=NOW)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p.pop("signature"), "missing signature block"),
        (lambda p: p["signature"].pop("timestamp"), "missing signature.timestamp"),
        (lambda p: p["signature"].pop("token"), "missing signature.token"),
        (lambda p: p["signature"].pop("signature"), "missing signature.signature"),
        (lambda p: p["signature"].update(timestamp="soon"), "not a Unix timestamp"),
    ],
)
def test_missing_signature_fields_are_refused(mutate: Any, message: str) -> None:
    payload = json.loads(BODY)
    mutate(payload)
    with pytest.raises(WebhookAuthError, match=message):
        mailgun.verify(headers={}, body=json.dumps(payload).encode(), signing_key=SIGNING_KEY, now=NOW)


@pytest.mark.parametrize("key", [None, ""])
def test_unconfigured_key_refuses_a_well_signed_request(key: str | None) -> None:
    with pytest.raises(WebhookAuthError, match="not configured"):
        mailgun.verify(headers={}, body=BODY, signing_key=key, now=NOW)


@pytest.mark.parametrize("body", [b"not json", b"[]", b'"text"'])
def test_verify_raises_malformed_for_an_unparseable_body(body: bytes) -> None:
    with pytest.raises(MalformedPayload):
        mailgun.verify(headers={}, body=body, signing_key=SIGNING_KEY, now=NOW)


def test_permanent_bounce() -> None:
    data = event_data(
        "failed",
        severity="permanent",
        reason="bounce",
        **{
            "log-level": "error",
            "delivery-status": {
                "attempt-no": 1,
                "code": 550,
                "message": "5.1.1 The email account that you tried to reach does not exist.",
                "description": "",
                "mx-host": "aspmx.l.example.com",
            },
        },
    )
    event = parse_one(data)
    assert event.status is EmailStatus.DELIVERY_FAILED
    assert event.failure_category is FailureCategory.INVALID_RECIPIENT
    assert event.smtp_code == 550
    assert event.reason == "5.1.1 The email account that you tried to reach does not exist."
    assert event.email_ref == "email-42"


def test_permanent_bounce_without_address_problem_is_a_hard_bounce() -> None:
    status = {"code": "554", "message": "5.7.1 Service unavailable; client host blocked"}
    data = event_data("failed", severity="permanent", reason="bounce")
    data["delivery-status"] = status
    event = parse_one(data)
    assert (event.failure_category, event.smtp_code) == (FailureCategory.HARD_BOUNCE, 554)


def test_temporary_failure_is_never_delivery_failed() -> None:
    data = event_data(
        "failed",
        severity="temporary",
        reason="greylisted",
        **{
            "log-level": "warn",
            "delivery-status": {
                "attempt-no": 1,
                "code": 450,
                "message": "Recipient address rejected: Greylisted",
                "description": "Recipient address rejected: Greylisted",
                "retry-seconds": 300,
            },
        },
    )
    event = parse_one(data)
    assert event.status is EmailStatus.SENT
    assert event.failure_category is FailureCategory.SOFT_BOUNCE
    assert (event.reason, event.smtp_code) == ("Recipient address rejected: Greylisted", 450)


@pytest.mark.parametrize(
    ("reason", "category"),
    [
        ("suppress-bounce", FailureCategory.DROPPED),
        ("suppress-unsubscribe", FailureCategory.DROPPED),
        ("suppress-complaint", FailureCategory.DROPPED),
        ("old", FailureCategory.SOFT_BOUNCE),
        ("espblock", FailureCategory.BLOCKED),
        ("generic", FailureCategory.OTHER),
    ],
)
def test_permanent_failure_reasons(reason: str, category: FailureCategory) -> None:
    data = event_data("failed", severity="permanent", reason=reason)
    data["delivery-status"] = {"code": 605, "description": "Not delivering to previously bounced"}
    event = parse_one(data)
    assert (event.status, event.failure_category) == (EmailStatus.DELIVERY_FAILED, category)
    assert event.reason == "Not delivering to previously bounced"
    assert event.smtp_code is None  # 605 is Mailgun's own code, not an SMTP reply


def test_rejected_complained_unsubscribed_clicked_accepted() -> None:
    rejected = parse_one(event_data("rejected", reject={"reason": "Sandbox domain"}))
    assert (rejected.status, rejected.failure_category) == (
        EmailStatus.DELIVERY_FAILED,
        FailureCategory.DROPPED,
    )
    assert rejected.reason == "Sandbox domain"
    complained = parse_one(event_data("complained"))  # a complaint proves delivery
    assert (complained.status, complained.failure_category) == (EmailStatus.DELIVERED, FailureCategory.SPAM_COMPLAINT)
    assert parse_one(event_data("unsubscribed")).status is EmailStatus.SENT
    clicked = parse_one(event_data("clicked", url="https://example.com/pay"))
    assert (clicked.status, clicked.description) == (
        EmailStatus.SENT,
        "Clicked https://example.com/pay",
    )
    assert parse_one(event_data("accepted")).status is EmailStatus.SENT


@pytest.mark.parametrize(
    ("client_info", "machine"),
    [
        ({"client-type": "browser", "bot": ""}, False),
        ({"client-type": "unknown", "bot": "apple"}, True),
        ({"client-type": "robot"}, True),
        ({}, None),
    ],
)
def test_opened_machine_flag(client_info: dict[str, str], machine: bool | None) -> None:
    info = {"client-name": "unknown", "client-os": "unknown", "device-type": "unknown"}
    info |= {"user-agent": "Mozilla/5.0"} | client_info
    data = event_data("opened", ip="50.56.129.169", geolocation={"country": "US"})
    data["client-info"] = info
    event = parse_one(data)
    assert event.status is EmailStatus.OPENED
    assert event.machine_open is machine
    assert (event.user_agent, event.ip) == ("Mozilla/5.0", "50.56.129.169")


def test_empty_user_variables_list_and_unknown_events() -> None:
    data = event_data("delivered")
    data["user-variables"] = []  # what Mailgun sends when there are none
    assert parse_one(data).email_ref is None
    assert mailgun.parse(signed(event_data("stored"))) == []


def test_every_documented_event_type_maps() -> None:
    names = ["accepted", "rejected", "delivered", "opened", "clicked", "unsubscribed", "complained"]
    for name in names:
        assert parse_one(event_data(name)).description
    for severity in ("temporary", "permanent"):
        assert parse_one(event_data("failed", severity=severity)).description


def _without(path: str) -> dict[str, Any]:
    data = copy.deepcopy(DELIVERED)
    *parents, leaf = path.split(".")
    target = data
    for part in parents:
        target = target[part]
    del target[leaf]
    return data


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (json.dumps({"event-data": DELIVERED}).encode(), "'signature'"),
        (json.dumps({"signature": {"token": 5}, "event-data": DELIVERED}).encode(), "token"),
        (json.dumps({"signature": {"token": TOKEN}}).encode(), "'event-data'"),
        (signed(_without("event")), "event-data.event"),
        (signed(_without("timestamp")), "event-data.timestamp"),
        (signed({**DELIVERED, "timestamp": "noon"}), "event-data.timestamp"),
        (signed({**DELIVERED, "recipient": 12}), "event-data.recipient"),
        (signed({**DELIVERED, "message": "x"}), "event-data.message"),
        (signed({**DELIVERED, "user-variables": "x"}), "user-variables"),
        (signed({**DELIVERED, "user-variables": {"gateway_email_id": 1}}), "gateway_email_id"),
        (signed(event_data("failed")), "event-data.severity"),
        (signed(event_data("failed", severity="maybe")), "event-data.severity"),
        (signed(event_data("opened", **{"client-info": []})), "client-info"),
    ],
)
def test_malformed_bodies_name_the_field(body: bytes, field: str) -> None:
    with pytest.raises(MalformedPayload, match=field):
        mailgun.parse(body)
