"""SendGrid Event Webhook: signed like SendGrid signs, shaped like SendGrid's documented samples."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.enums import EmailStatus, FailureCategory
from gateway.errors import MalformedPayload, WebhookAuthError
from gateway.webhooks.providers import sendgrid

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
EVENT_TIME = 1714564800  # 2024-05-01T12:00:00Z
PRIVATE_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())


def public_key_b64(private_key: ec.EllipticCurvePrivateKey) -> str:
    """The verification key as SendGrid shows it: base64 DER SubjectPublicKeyInfo."""
    der = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


PUBLIC_KEY = public_key_b64(PRIVATE_KEY)


def sign(body: bytes, *, at: datetime = NOW, key: ec.EllipticCurvePrivateKey = PRIVATE_KEY) -> dict[str, str]:
    """Sign like SendGrid: ECDSA P-256/SHA-256 over timestamp header + raw body, base64 DER."""
    timestamp = str(int(at.timestamp()))
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        sendgrid.SIGNATURE_HEADER: base64.b64encode(signature).decode(),
        sendgrid.TIMESTAMP_HEADER: timestamp,
        "content-type": "application/json",
    }


def common(event: str, event_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "email": "client@example.com",
        "timestamp": EVENT_TIME,
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "event": event,
        "category": "invoices",
        "sg_event_id": event_id,
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        "gateway_email_id": "email-42",  # a custom arg: a top-level key of the event
        **extra,
    }


SAMPLE = [
    common("processed", "rbtnWrG1DVDGGGFHFyun0A==", pool={"name": "main", "id": 210}),
    common("deferred", "t7LEShmowp86DTdUW8M-GQ==", response="400 try again later", attempt="5"),
    common("delivered", "rWVYmVk90MjZJ9iohOBa3w==", response="250 OK", tls=1, ip="168.1.1.1"),
    common(
        "open",
        "FOTFFO0ecsBE-zxFXfs6WA==",
        useragent="Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)",
        ip="255.255.255.255",
        sg_machine_open=True,
    ),
    common(
        "click",
        "kCAi1KttyQdEKHhdC-nuEA==",
        useragent="Mozilla/5.0",
        ip="255.255.255.255",
        url="https://example.com/invoice/42",
        url_offset={"index": 0, "type": "html"},
    ),
    common(
        "bounce",
        "6g4ZI7SA-xmRDv57GoPIPw==",
        reason="500 unknown recipient",
        status="5.0.0",
        type="bounce",
        bounce_classification="Technical Failure",
    ),
    common(
        "bounce",
        "blocked-1",
        reason="550 5.7.1 Message rejected due to policy",
        status="5.7.1",
        type="blocked",
        bounce_classification="Reputation",
    ),
    common("dropped", "zmzJhfJgAfUSOW80yEbPyw==", reason="Bounced Address", status="5.0.0"),
    common("spamreport", "37nvH5QBz858KGVYCM4uOA=="),
    common("unsubscribe", "zz_BjPgU_5pS-J8vlfB1sg=="),
    common("group_unsubscribe", "ahSCB7xYcXFb-hEaawsPRw==", url="https://x.io", asm_group_id=10),
    common("group_resubscribe", "w_u0vJhLT-OFfprar5N93g==", url="https://x.io", asm_group_id=10),
]
SAMPLE_BODY = json.dumps(SAMPLE).encode()


def test_good_signature_is_accepted() -> None:
    sendgrid.verify(headers=sign(SAMPLE_BODY), body=SAMPLE_BODY, public_key=PUBLIC_KEY, now=NOW)


def test_pem_key_is_accepted_too() -> None:
    pem = PRIVATE_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    sendgrid.verify(headers=sign(SAMPLE_BODY), body=SAMPLE_BODY, public_key=pem.decode(), now=NOW)


def test_sample_parses_to_the_expected_events() -> None:
    events = {event.key: event for event in sendgrid.parse(SAMPLE_BODY)}
    assert len(events) == len(SAMPLE)
    for event in events.values():
        assert event.source == "sendgrid"
        assert event.occurred_at == NOW
        assert event.occurred_at.tzinfo is not None
        assert event.provider_message_id == "14c5d75ce93.dfd.64b469"  # up to ".filter"
        assert event.email_ref == "email-42"
        assert event.recipient == "client@example.com"

    processed = events["rbtnWrG1DVDGGGFHFyun0A=="]
    assert (processed.status, processed.failure_category) == (EmailStatus.SENT, None)

    deferred = events["t7LEShmowp86DTdUW8M-GQ=="]
    assert deferred.status is EmailStatus.SENT
    assert deferred.failure_category is FailureCategory.SOFT_BOUNCE
    assert (deferred.reason, deferred.smtp_code) == ("400 try again later", 400)
    assert "attempt 5" in deferred.description

    delivered = events["rWVYmVk90MjZJ9iohOBa3w=="]
    assert (delivered.status, delivered.smtp_code) == (EmailStatus.DELIVERED, 250)

    opened = events["FOTFFO0ecsBE-zxFXfs6WA=="]
    assert opened.status is EmailStatus.OPENED
    assert opened.machine_open is True
    assert opened.user_agent == "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)"
    assert opened.ip == "255.255.255.255"

    clicked = events["kCAi1KttyQdEKHhdC-nuEA=="]
    assert clicked.status is EmailStatus.SENT
    assert clicked.description == "Clicked https://example.com/invoice/42"

    bounced = events["6g4ZI7SA-xmRDv57GoPIPw=="]
    assert bounced.status is EmailStatus.DELIVERY_FAILED
    assert bounced.failure_category is FailureCategory.HARD_BOUNCE
    assert (bounced.reason, bounced.smtp_code) == ("500 unknown recipient", 500)

    blocked = events["blocked-1"]
    assert (blocked.status, blocked.failure_category) == (
        EmailStatus.DELIVERY_FAILED,
        FailureCategory.BLOCKED,
    )
    assert blocked.smtp_code == 550

    dropped = events["zmzJhfJgAfUSOW80yEbPyw=="]
    assert dropped.failure_category is FailureCategory.DROPPED
    assert (dropped.status, dropped.reason) == (EmailStatus.DELIVERY_FAILED, "Bounced Address")

    spam = events["37nvH5QBz858KGVYCM4uOA=="]  # a complaint proves delivery
    assert (spam.status, spam.failure_category) == (
        EmailStatus.DELIVERED,
        FailureCategory.SPAM_COMPLAINT,
    )
    for key in ("zz_BjPgU_5pS-J8vlfB1sg==", "ahSCB7xYcXFb-hEaawsPRw==", "w_u0vJhLT-OFfprar5N93g=="):
        assert (events[key].status, events[key].failure_category) == (EmailStatus.SENT, None)


def test_async_bounce_has_no_message_id_and_status_gives_the_code() -> None:
    raw = common("bounce", "async-1", reason="Mailbox unavailable", status="5.1.1")
    del raw["sg_message_id"]
    (event,) = sendgrid.parse(json.dumps([raw]).encode())
    assert event.provider_message_id is None
    assert event.failure_category is FailureCategory.INVALID_RECIPIENT  # 5.1.1: bad mailbox
    assert event.smtp_code == 500  # "5.x.x" stands for a 500 reply (SendGrid docs)


def test_invalid_address_classification() -> None:
    raw = common("bounce", "b-2", reason="bad", type="bounce", bounce_classification="Invalid Address")
    (event,) = sendgrid.parse(json.dumps([raw]).encode())
    assert event.failure_category is FailureCategory.INVALID_RECIPIENT


def test_open_without_machine_flag() -> None:
    (event,) = sendgrid.parse(json.dumps([common("open", "o-2")]).encode())
    assert event.machine_open is None


def test_account_and_unknown_events_are_dropped() -> None:
    raw = [
        {"event": "account_status_change", "sg_event_id": "acc-1", "timestamp": EVENT_TIME},
        common("some_future_event", "f-1"),
    ]
    assert sendgrid.parse(json.dumps(raw).encode()) == []


def test_temporary_failure_is_never_delivery_failed() -> None:
    events = sendgrid.parse(SAMPLE_BODY)
    deferred = [e for e in events if e.key == "t7LEShmowp86DTdUW8M-GQ=="]
    assert deferred
    assert all(e.status is not EmailStatus.DELIVERY_FAILED for e in deferred)


def test_forged_signature_is_refused() -> None:
    headers = sign(SAMPLE_BODY, key=OTHER_KEY)
    with pytest.raises(WebhookAuthError, match="bad signature"):
        sendgrid.verify(headers=headers, body=SAMPLE_BODY, public_key=PUBLIC_KEY, now=NOW)


def test_body_changed_after_signing_is_refused() -> None:
    headers = sign(SAMPLE_BODY)
    tampered = SAMPLE_BODY.replace(b'"dropped"', b'"delivered"')
    with pytest.raises(WebhookAuthError, match="bad signature"):
        sendgrid.verify(headers=headers, body=tampered, public_key=PUBLIC_KEY, now=NOW)


def test_timestamp_header_changed_after_signing_is_refused() -> None:
    headers = sign(SAMPLE_BODY)
    headers[sendgrid.TIMESTAMP_HEADER] = str(int(NOW.timestamp()) + 1)
    with pytest.raises(WebhookAuthError, match="bad signature"):
        sendgrid.verify(headers=headers, body=SAMPLE_BODY, public_key=PUBLIC_KEY, now=NOW)


@settings(max_examples=60, deadline=None, database=None)
@given(st.data())
def test_any_single_byte_change_is_refused(data: st.DataObject) -> None:
    headers = sign(SAMPLE_BODY)
    index = data.draw(st.integers(0, len(SAMPLE_BODY) - 1))
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != SAMPLE_BODY[index]))
    tampered = SAMPLE_BODY[:index] + bytes([byte]) + SAMPLE_BODY[index + 1 :]
    with pytest.raises(WebhookAuthError):
        sendgrid.verify(headers=headers, body=tampered, public_key=PUBLIC_KEY, now=NOW)


@pytest.mark.parametrize(
    ("signed_at", "message"),
    [
        (NOW - timedelta(minutes=5, seconds=1), "stale"),
        (NOW + timedelta(minutes=5, seconds=1), "future"),
    ],
)
def test_stale_and_future_timestamps_are_refused(signed_at: datetime, message: str) -> None:
    headers = sign(SAMPLE_BODY, at=signed_at)
    with pytest.raises(WebhookAuthError, match=message):
        sendgrid.verify(headers=headers, body=SAMPLE_BODY, public_key=PUBLIC_KEY, now=NOW)


def test_timestamps_inside_the_window_are_accepted() -> None:
    for signed_at in (NOW - timedelta(minutes=5), NOW + timedelta(minutes=4)):
        headers = sign(SAMPLE_BODY, at=signed_at)
        sendgrid.verify(headers=headers, body=SAMPLE_BODY, public_key=PUBLIC_KEY, now=NOW)


@pytest.mark.parametrize("header", [sendgrid.SIGNATURE_HEADER, sendgrid.TIMESTAMP_HEADER])
def test_missing_headers_are_refused(header: str) -> None:
    headers = sign(SAMPLE_BODY)
    del headers[header]
    with pytest.raises(WebhookAuthError, match=f"missing {header}"):
        sendgrid.verify(headers=headers, body=SAMPLE_BODY, public_key=PUBLIC_KEY, now=NOW)


@pytest.mark.parametrize("value", ["not base64!", "AAAA"])
def test_garbage_signature_is_refused(value: str) -> None:
    headers = sign(SAMPLE_BODY)
    headers[sendgrid.SIGNATURE_HEADER] = value
    with pytest.raises(WebhookAuthError, match="bad signature"):
        sendgrid.verify(headers=headers, body=SAMPLE_BODY, public_key=PUBLIC_KEY, now=NOW)


def test_non_numeric_timestamp_is_refused() -> None:
    headers = sign(SAMPLE_BODY)
    headers[sendgrid.TIMESTAMP_HEADER] = "yesterday"
    with pytest.raises(WebhookAuthError, match="not a Unix timestamp"):
        sendgrid.verify(headers=headers, body=SAMPLE_BODY, public_key=PUBLIC_KEY, now=NOW)


@pytest.mark.parametrize("key", [None, ""])
def test_unconfigured_key_refuses_a_well_signed_request(key: str | None) -> None:
    with pytest.raises(WebhookAuthError, match="not configured"):
        sendgrid.verify(headers=sign(SAMPLE_BODY), body=SAMPLE_BODY, public_key=key, now=NOW)


def test_invalid_key_setting_is_refused() -> None:
    rsa_like = base64.b64encode(b"not a key").decode()
    with pytest.raises(WebhookAuthError, match="not a valid public key"):
        sendgrid.verify(headers=sign(SAMPLE_BODY), body=SAMPLE_BODY, public_key=rsa_like, now=NOW)


def test_p384_key_is_refused() -> None:
    key = public_key_b64(ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(WebhookAuthError, match="P-256"):
        sendgrid.verify(headers=sign(SAMPLE_BODY), body=SAMPLE_BODY, public_key=key, now=NOW)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not json", "not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b'{"event": "open"}', "JSON array"),
        (b"[1]", "[0]"),
        (b'[{"event": "open", "NaN": NaN}]', "not valid JSON"),
        (json.dumps([{**common("open", "x"), "sg_event_id": None}]).encode(), "[0].sg_event_id"),
        (json.dumps([{**common("open", "x"), "sg_event_id": 7}]).encode(), "[0].sg_event_id"),
        (json.dumps([{**common("open", "x"), "event": 3}]).encode(), "[0].event"),
        (json.dumps([{**common("open", "x"), "email": ["a"]}]).encode(), "[0].email"),
        (json.dumps([{**common("open", "x"), "timestamp": "soon"}]).encode(), "[0].timestamp"),
        (json.dumps([{**common("open", "x"), "timestamp": True}]).encode(), "[0].timestamp"),
        (json.dumps([{**common("open", "x"), "sg_machine_open": "yes"}]).encode(), "machine"),
        (json.dumps([{**common("open", "x"), "gateway_email_id": 5}]).encode(), "gateway_email"),
        (json.dumps([{**common("dropped", "x"), "reason": 5}]).encode(), "[0].reason"),
        (json.dumps([common("open", "ok"), {"event": "open"}]).encode(), "[1].sg_event_id"),
    ],
)
def test_malformed_bodies_name_the_field(body: bytes, field: str) -> None:
    with pytest.raises(MalformedPayload, match=field.replace("[", r"\[").replace("]", r"\]")):
        sendgrid.parse(body)


def test_every_documented_event_type_maps() -> None:
    names = ["processed", "deferred", "delivered", "bounce", "dropped", "spamreport", "open"]
    names += ["click", "unsubscribe", "group_unsubscribe", "group_resubscribe"]
    raw = [common(name, f"id-{name}") for name in names]
    events = sendgrid.parse(json.dumps(raw).encode())
    assert [e.key for e in events] == [f"id-{name}" for name in names]
    assert all(e.description for e in events)


@pytest.mark.parametrize(
    ("sg_message_id", "x_message_id"),
    [
        ("14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0", "14c5d75ce93.dfd.64b469"),
        ("W86EgYT6SQKk0lRflfLRsA.filter0425p1mdw1-13919-5C1A2D24-31.0", "W86EgYT6SQKk0lRflfLRsA"),
        ("Yt5mYjwpRK2Ncr8vOZbnWA.recvd-5f54b5d587-kb2w2-1-5F1E3A7B-13.0", "Yt5mYjwpRK2Ncr8vOZbnWA"),
        ("W86EgYT6SQKk0lRflfLRsA.0", "W86EgYT6SQKk0lRflfLRsA"),
        (None, None),
    ],
)
def test_the_send_api_message_id_is_recovered(sg_message_id: str | None, x_message_id: str | None) -> None:
    assert sendgrid.send_api_message_id(sg_message_id) == x_message_id
