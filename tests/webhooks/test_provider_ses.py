"""Amazon SES through SNS: envelopes signed like SNS signs them, SES events as AWS documents them.

The signing certificate is self-signed here and served through the store's injectable fetch.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.enums import EmailStatus, FailureCategory
from gateway.errors import MalformedPayload, WebhookAuthError
from gateway.webhooks.providers import ses

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-events"
CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-9c6465fa7f48.pem"
SES_MESSAGE_ID = "010701844f0e7f65-3d2f4a0b-8c43-4a9e-9c27-1e3c3c2b8f6e-000000"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def certificate(key: rsa.RSAPrivateKey = KEY, *, not_before: datetime = NOW - timedelta(days=30)) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(Encoding.PEM)


PEM = certificate()


class FakeFetch:
    """Serves one certificate and records every URL asked for."""

    def __init__(self, pem: bytes = PEM) -> None:
        self.pem = pem
        self.calls: list[str] = []

    async def __call__(self, url: str) -> bytes:
        self.calls.append(url)
        return self.pem


def sns_sign(envelope: dict[str, Any], *, version: str = "2", key: rsa.RSAPrivateKey = KEY) -> None:
    """Sign like SNS: "Key\\nValue\\n" over the documented fields, SHA1/SHA256 with RSA."""
    if envelope["Type"] == "Notification":
        keys = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    else:
        keys = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    text = "".join(f"{k}\n{envelope[k]}\n" for k in keys if envelope.get(k) is not None)
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303 (SNS v1)
    signature = key.sign(text.encode(), padding.PKCS1v15(), algorithm)
    envelope["SignatureVersion"] = version
    envelope["Signature"] = base64.b64encode(signature).decode()


def mail(**extra: Any) -> dict[str, Any]:
    """The `mail` object of AWS's "Examples of event data SES publishes to SNS"."""
    return {
        "timestamp": "2024-05-01T11:58:00.012Z",
        "source": "Invoices <invoices@example.org>",
        "sourceArn": "arn:aws:ses:eu-west-1:123456789012:identity/example.org",
        "sendingAccountId": "123456789012",
        "messageId": SES_MESSAGE_ID,
        "destination": ["client@example.com"],
        "headersTruncated": False,
        "headers": [{"name": "From", "value": "invoices@example.org"}],
        "commonHeaders": {
            "from": ["invoices@example.org"],
            "to": ["client@example.com"],
            "messageId": SES_MESSAGE_ID,
            "subject": "Your invoice",
        },
        "tags": {
            "ses:configuration-set": ["gateway"],
            "ses:source-ip": ["192.0.2.0"],
            "ses:from-domain": ["example.org"],
            "gateway_email_id": ["email-42"],
        },
        **extra,
    }


BOUNCE: dict[str, Any] = {
    "eventType": "Bounce",
    "bounce": {
        "bounceType": "Permanent",
        "bounceSubType": "General",
        "bouncedRecipients": [
            {
                "emailAddress": "client@example.com",
                "action": "failed",
                "status": "5.1.1",
                "diagnosticCode": "smtp; 550 5.1.1 user unknown",
            }
        ],
        "timestamp": "2024-05-01T11:59:02.669Z",
        "feedbackId": "01000157c44f053b-61b59c11-9236-11e6-8f96-7be8aexample-000000",
        "reportingMTA": "dsn; mta.example.com",
    },
    "mail": mail(),
}


def notification(ses_event: dict[str, Any], *, version: str = "2", **extra: Any) -> dict[str, Any]:
    envelope = {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": TOPIC,
        "Message": json.dumps(ses_event),
        "Timestamp": "2024-05-01T11:59:03.655Z",
        "SigningCertURL": CERT_URL,
        "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe&x=1",
        **extra,
    }
    sns_sign(envelope, version=version)
    return envelope


def confirmation(kind: str = "SubscriptionConfirmation") -> dict[str, Any]:
    envelope = {
        "Type": kind,
        "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "Token": "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a",
        "TopicArn": TOPIC,
        "Message": f"You have chosen to subscribe to the topic {TOPIC}.\nTo confirm...",
        "SubscribeURL": (
            "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription"
            f"&TopicArn={TOPIC}&Token=2336412f37fb687f5d51e6e241d09c805a5a"
        ),
        "Timestamp": "2024-05-01T11:59:03.751Z",
        "SigningCertURL": CERT_URL,
    }
    sns_sign(envelope)
    return envelope


def body(envelope: dict[str, Any]) -> bytes:
    return json.dumps(envelope).encode()


async def check(envelope: dict[str, Any], fetch: FakeFetch | None = None, **kw: Any) -> None:
    store = ses.CertificateStore(fetch=fetch or FakeFetch())
    parsed = ses.parse_envelope(body(envelope))
    await ses.verify(
        envelope=parsed,
        allowed_topic_arns=kw.pop("topics", {TOPIC}),
        certificates=store,
        now=kw.pop("now", NOW),
        **kw,
    )


@pytest.mark.parametrize("version", ["1", "2"])
async def test_signature_versions_1_and_2_are_accepted_and_parsed(version: str) -> None:
    envelope = notification(BOUNCE, version=version)
    await check(envelope)
    (event,) = ses.parse(ses.parse_envelope(body(envelope)))
    assert event.source == "ses"
    assert event.key == "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324"
    assert event.status is EmailStatus.DELIVERY_FAILED
    assert event.failure_category is FailureCategory.INVALID_RECIPIENT  # 5.1.1
    assert (event.reason, event.smtp_code) == ("smtp; 550 5.1.1 user unknown", 550)
    assert event.occurred_at == datetime(2024, 5, 1, 11, 59, 2, 669000, tzinfo=UTC)
    assert event.provider_message_id == SES_MESSAGE_ID
    assert (event.email_ref, event.recipient) == ("email-42", "client@example.com")


async def test_subject_is_part_of_the_signed_text() -> None:
    envelope = notification(BOUNCE, Subject="Amazon SES Email Event Notification")
    await check(envelope)
    envelope["Subject"] = "Something else"
    with pytest.raises(WebhookAuthError, match="bad signature"):
        await check(envelope)


async def test_subscription_confirmation_is_verified_and_gives_its_url() -> None:
    envelope = confirmation()
    await check(envelope)
    parsed = ses.parse_envelope(body(envelope))
    assert ses.subscribe_url(parsed) == envelope["SubscribeURL"]
    assert ses.parse(parsed) == []
    envelope["Token"] = "another-token"
    with pytest.raises(WebhookAuthError, match="bad signature"):
        await check(envelope)


async def test_unsubscribe_confirmation_is_verified_and_has_no_subscribe_action() -> None:
    envelope = confirmation("UnsubscribeConfirmation")
    await check(envelope)
    assert ses.subscribe_url(ses.parse_envelope(body(envelope))) is None


def test_subscribe_url_must_point_at_sns() -> None:
    envelope = confirmation()
    envelope["SubscribeURL"] = "https://attacker.example/confirm"
    with pytest.raises(MalformedPayload, match="SubscribeURL"):
        ses.subscribe_url(ses.parse_envelope(body(envelope)))
    assert ses.subscribe_url(ses.parse_envelope(body(notification(BOUNCE)))) is None


async def test_forged_signature_is_refused() -> None:
    envelope = notification(BOUNCE)
    sns_sign(envelope, key=OTHER_KEY)
    with pytest.raises(WebhookAuthError, match="bad signature"):
        await check(envelope)


async def test_message_changed_after_signing_is_refused() -> None:
    envelope = notification(BOUNCE)
    envelope["Message"] = envelope["Message"].replace("Permanent", "Transient")
    with pytest.raises(WebhookAuthError, match="bad signature"):
        await check(envelope)


@settings(max_examples=60, deadline=None, database=None)
@given(st.data())
def test_any_single_character_change_to_a_signed_field_is_refused(data: st.DataObject) -> None:
    envelope = notification(BOUNCE)
    field = data.draw(st.sampled_from(["Message", "MessageId", "Timestamp", "TopicArn", "Type"]))
    value = envelope[field]
    index = data.draw(st.integers(0, len(value) - 1))
    char = data.draw(st.characters(codec="utf-8").filter(lambda c: c != value[index]))
    envelope[field] = value[:index] + char + value[index + 1 :]
    cert = x509.load_pem_x509_certificate(PEM)
    with pytest.raises(WebhookAuthError):
        ses.verify_signature(envelope, cert)


@pytest.mark.parametrize(
    ("timestamp", "message"),
    [("2024-05-01T10:59:59.000Z", "stale"), ("2024-05-01T12:05:01.000Z", "future")],
)
async def test_stale_and_future_timestamps_are_refused(timestamp: str, message: str) -> None:
    envelope = notification(BOUNCE, Timestamp=timestamp)
    with pytest.raises(WebhookAuthError, match=message):
        await check(envelope)


async def test_retries_within_the_hour_are_accepted() -> None:
    await check(notification(BOUNCE), now=NOW + timedelta(minutes=55))


async def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="aware"):
        await check(notification(BOUNCE), now=NOW.replace(tzinfo=None))


async def test_wrong_topic_is_refused_without_fetching() -> None:
    fetch = FakeFetch()
    envelope = notification(BOUNCE, TopicArn="arn:aws:sns:eu-west-1:999999999999:other")
    with pytest.raises(WebhookAuthError, match="TopicArn"):
        await check(envelope, fetch)
    assert fetch.calls == []


@pytest.mark.parametrize("topics", [set(), ()])
async def test_unconfigured_topics_refuse_a_well_signed_message(topics: Any) -> None:
    with pytest.raises(WebhookAuthError, match="not configured"):
        await check(notification(BOUNCE), topics=topics)


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem",
        "https://sns.eu-west-1.amazonaws.com.evil.example/SimpleNotificationService-1.pem",
        "https://evil.example/sns.eu-west-1.amazonaws.com/cert.pem",
        "https://s3.amazonaws.com/SimpleNotificationService-1.pem",
        "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.txt",
        "https://sns.eu-west-1.amazonaws.com:8443/SimpleNotificationService-1.pem",
        "https://user@sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem",
        "https://sns.eu-west-1.amazonaws.com/x.pem?redirect=https://evil.example/a.pem",
        "https://sns.eu-west-1.amazonaws.com:bad/x.pem",
        "ftp://sns.eu-west-1.amazonaws.com/x.pem",
    ],
)
async def test_foreign_or_insecure_certificate_urls_are_refused_without_fetching(url: str) -> None:
    fetch = FakeFetch()
    envelope = notification(BOUNCE, SigningCertURL=url)
    with pytest.raises(WebhookAuthError, match="SigningCertURL"):
        await check(envelope, fetch)
    assert fetch.calls == []


async def test_china_regions_are_accepted() -> None:
    url = "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-1.pem"
    fetch = FakeFetch()
    await check(notification(BOUNCE, SigningCertURL=url), fetch)
    assert fetch.calls == [url]


async def test_certificate_is_fetched_once_per_url() -> None:
    fetch = FakeFetch()
    store = ses.CertificateStore(fetch=fetch)
    for envelope in (notification(BOUNCE), confirmation(), notification(BOUNCE, version="1")):
        parsed = ses.parse_envelope(body(envelope))
        await ses.verify(envelope=parsed, allowed_topic_arns=[TOPIC], certificates=store, now=NOW)
    assert fetch.calls == [CERT_URL]


async def test_bad_certificates_are_refused() -> None:
    with pytest.raises(WebhookAuthError, match="not a PEM certificate"):
        await ses.CertificateStore(fetch=FakeFetch(b"<html>")).get(CERT_URL)
    expired = FakeFetch(certificate(not_before=NOW - timedelta(days=400)))
    with pytest.raises(WebhookAuthError, match="not valid now"):
        await check(notification(BOUNCE), expired)


async def test_unknown_signature_version_is_refused() -> None:
    envelope = notification(BOUNCE)
    envelope["SignatureVersion"] = "3"
    with pytest.raises(WebhookAuthError, match="SignatureVersion"):
        await check(envelope)
    envelope["SignatureVersion"] = "2"
    envelope["Signature"] = "!!not base64!!"
    with pytest.raises(WebhookAuthError, match="bad signature"):
        await check(envelope)


def parse_event(ses_event: dict[str, Any]) -> list[Any]:
    return ses.parse(ses.parse_envelope(body(notification(ses_event))))


def test_delivery_for_several_recipients_gives_one_event_each() -> None:
    recipients = ["client@example.com", "accounting@example.com"]
    event = {
        "eventType": "Delivery",
        "mail": mail(destination=recipients),
        "delivery": {
            "timestamp": "2024-05-01T11:59:00.000Z",
            "processingTimeMillis": 546,
            "recipients": recipients,
            "smtpResponse": "250 2.6.0 Message received",
            "reportingMTA": "mta.example.com",
        },
    }
    events = parse_event(event)
    assert [e.key for e in events] == [
        "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324:client@example.com",
        "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324:accounting@example.com",
    ]
    assert [e.recipient for e in events] == recipients
    assert all(e.status is EmailStatus.DELIVERED and e.smtp_code == 250 for e in events)


def test_delivery_delay_is_a_soft_bounce_never_a_failure() -> None:
    event = {
        "eventType": "DeliveryDelay",
        "mail": mail(),
        "deliveryDelay": {
            "timestamp": "2024-05-01T11:59:40.641Z",
            "delayType": "TransientCommunicationFailure",
            "expirationTime": "2024-05-01T12:25:40.914Z",
            "delayedRecipients": [
                {
                    "emailAddress": "client@example.com",
                    "status": "4.4.1",
                    "diagnosticCode": "smtp; 421 4.4.1 Unable to connect to remote host",
                }
            ],
        },
    }
    (delayed,) = parse_event(event)
    assert delayed.status is EmailStatus.SENT
    assert delayed.failure_category is FailureCategory.SOFT_BOUNCE
    assert delayed.smtp_code == 421
    assert delayed.reason == "smtp; 421 4.4.1 Unable to connect to remote host"


@pytest.mark.parametrize(
    ("bounce_type", "sub_type", "category"),
    [
        ("Permanent", "General", FailureCategory.HARD_BOUNCE),
        ("Permanent", "NoEmail", FailureCategory.INVALID_RECIPIENT),
        ("Permanent", "Suppressed", FailureCategory.DROPPED),
        ("Permanent", "OnAccountSuppressionList", FailureCategory.DROPPED),
        ("Transient", "General", FailureCategory.SOFT_BOUNCE),
        ("Transient", "MailboxFull", FailureCategory.SOFT_BOUNCE),
        ("Transient", "MessageTooLarge", FailureCategory.SOFT_BOUNCE),
        ("Transient", "ContentRejected", FailureCategory.BLOCKED),
        ("Transient", "AttachmentRejected", FailureCategory.BLOCKED),
        ("Undetermined", "Undetermined", FailureCategory.OTHER),
    ],
)
def test_bounce_types(bounce_type: str, sub_type: str, category: FailureCategory) -> None:
    event = copy.deepcopy(BOUNCE)
    event["bounce"].update(bounceType=bounce_type, bounceSubType=sub_type)
    event["bounce"]["bouncedRecipients"][0].update(status="5.0.0", diagnosticCode="smtp; 554 no")
    (parsed,) = parse_event(event)
    assert (parsed.status, parsed.failure_category) == (EmailStatus.DELIVERY_FAILED, category)
    assert parsed.smtp_code == 554


def test_identity_notification_format_is_read_too() -> None:
    event = copy.deepcopy(BOUNCE)
    event["notificationType"] = event.pop("eventType")
    (parsed,) = parse_event(event)
    assert parsed.status is EmailStatus.DELIVERY_FAILED
    success = {"notificationType": "AmazonSnsSubscriptionSucceeded", "message": "ok"}
    assert parse_event(success) == []


def test_every_documented_event_type_maps() -> None:
    detail = {"timestamp": "2024-05-01T11:59:30.000Z"}
    samples: dict[str, dict[str, Any]] = {
        "Send": {"send": {}},
        "Reject": {"reject": {"reason": "Bad content"}},
        "Rendering Failure": {"failure": {"errorMessage": "Attribute 'name' is missing", "templateName": "T"}},
        "Complaint": {
            "complaint": {
                **detail,
                "feedbackId": "0100017a",
                "complaintSubType": None,
                "complainedRecipients": [{"emailAddress": "client@example.com"}],
                "userAgent": "ExampleCorp Feedback Loop (V0.01)",
                "complaintFeedbackType": "abuse",
                "arrivalDate": "2024-05-01T11:59:29.000Z",
            }
        },
        "Open": {"open": {**detail, "ipAddress": "192.0.2.1", "userAgent": "Mozilla/5.0"}},
        "Click": {
            "click": {
                **detail,
                "ipAddress": "192.0.2.1",
                "link": "https://example.com/pay",
                "linkTags": {"samplekey0": ["samplevalue0"]},
                "userAgent": "Mozilla/5.0",
            }
        },
        "Subscription": {
            "subscription": {
                **detail,
                "contactList": "Clients",
                "source": "UnsubscribeHeader",
                "newTopicPreferences": {"unsubscribeAll": True},
                "oldTopicPreferences": {"unsubscribeAll": False},
            }
        },
    }
    expected = {
        "Send": (EmailStatus.SENT, None),
        "Reject": (EmailStatus.DELIVERY_FAILED, FailureCategory.BLOCKED),
        "Rendering Failure": (EmailStatus.DELIVERY_FAILED, FailureCategory.OTHER),
        "Complaint": (EmailStatus.DELIVERED, FailureCategory.SPAM_COMPLAINT),
        "Open": (EmailStatus.OPENED, None),
        "Click": (EmailStatus.SENT, None),
        "Subscription": (EmailStatus.SENT, None),
    }
    for kind, extra in samples.items():
        (parsed,) = parse_event({"eventType": kind, "mail": mail(), **extra})
        assert (parsed.status, parsed.failure_category) == expected[kind], kind
        assert parsed.key == "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324"
        assert parsed.recipient == "client@example.com"
        assert parsed.email_ref == "email-42"
    (opened,) = parse_event({"eventType": "Open", "mail": mail(), **samples["Open"]})
    assert (opened.user_agent, opened.ip, opened.machine_open) == ("Mozilla/5.0", "192.0.2.1", None)
    assert opened.occurred_at == datetime(2024, 5, 1, 11, 59, 30, tzinfo=UTC)
    (sent,) = parse_event({"eventType": "Send", "mail": mail(), "send": {}})
    assert sent.occurred_at == datetime(2024, 5, 1, 11, 58, 0, 12000, tzinfo=UTC)
    not_spam = copy.deepcopy(samples["Complaint"])
    not_spam["complaint"]["complaintFeedbackType"] = "not-spam"
    (parsed,) = parse_event({"eventType": "Complaint", "mail": mail(), **not_spam})
    assert parsed.status is EmailStatus.SENT


def test_open_of_a_message_with_several_recipients_names_none() -> None:
    opened = {"ipAddress": "192.0.2.1", "timestamp": "2024-05-01T11:59:30Z", "userAgent": "x"}
    destination = ["a@example.com", "b@example.com"]
    (event,) = parse_event({"eventType": "Open", "mail": mail(destination=destination), "open": opened})
    assert (event.recipient, event.key) == (None, "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324")


def test_without_tags_there_is_no_email_ref() -> None:
    event = copy.deepcopy(BOUNCE)
    del event["mail"]["tags"]
    (parsed,) = parse_event(event)
    assert parsed.email_ref is None


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"not json", "not valid JSON"),
        (b"[]", "JSON object"),
        (b'{"Type": "Nope"}', "'Type'"),
        (b'{"Message": "{}"}', "'Type'"),
    ],
)
def test_malformed_envelopes(raw: bytes, field: str) -> None:
    with pytest.raises(MalformedPayload, match=field):
        ses.parse_envelope(raw)


@pytest.mark.parametrize("field", ["MessageId", "TopicArn", "Message", "Timestamp", "Signature", "SigningCertURL"])
def test_envelope_missing_fields_are_named(field: str) -> None:
    envelope = notification(BOUNCE)
    del envelope[field]
    with pytest.raises(MalformedPayload, match=field):
        ses.parse_envelope(body(envelope))


def test_envelope_field_types_are_checked() -> None:
    for field, value in (("Subject", 5), ("Timestamp", "yesterday"), ("SignatureVersion", 2)):
        envelope = notification(BOUNCE)
        envelope[field] = value
        with pytest.raises(MalformedPayload, match=field):
            ses.parse_envelope(body(envelope))
    envelope = confirmation()
    del envelope["SubscribeURL"]
    with pytest.raises(MalformedPayload, match="SubscribeURL"):
        ses.parse_envelope(body(envelope))


def _broken(path: str, value: Any) -> dict[str, Any]:
    event = copy.deepcopy(BOUNCE)
    *parents, leaf = path.split(".")
    target: Any = event
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if value is ...:
        del target[leaf]
    else:
        target[leaf] = value
    return event


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (_broken("eventType", ...), "Message.eventType"),
        (_broken("mail", ...), "Message.mail"),
        (_broken("mail.messageId", 3), "Message.mail.messageId"),
        (_broken("mail.tags", ["x"]), "Message.mail.tags"),
        (_broken("mail.tags.gateway_email_id", [7]), "gateway_email_id"),
        (_broken("bounce", ...), "Message.bounce"),
        (_broken("bounce.bounceType", ...), "Message.bounce.bounceType"),
        (_broken("bounce.timestamp", "later"), "Message.bounce.timestamp"),
        (_broken("bounce.bouncedRecipients", []), "Message.bounce.bouncedRecipients"),
        (_broken("bounce.bouncedRecipients", {}), "Message.bounce.bouncedRecipients"),
        (_broken("bounce.bouncedRecipients.0.emailAddress", ...), "emailAddress"),
        (_broken("bounce.bouncedRecipients.0.diagnosticCode", 550), "diagnosticCode"),
    ],
)
def test_malformed_ses_events_name_the_field(event: dict[str, Any], field: str) -> None:
    with pytest.raises(MalformedPayload, match=field):
        parse_event(event)


def test_message_that_is_not_an_object_is_malformed() -> None:
    envelope = notification(BOUNCE, Message="just text")
    with pytest.raises(MalformedPayload, match="not valid JSON"):
        ses.parse(ses.parse_envelope(body(envelope)))
    envelope = notification(BOUNCE, Message="[1]")
    with pytest.raises(MalformedPayload, match="'Message'"):
        ses.parse(ses.parse_envelope(body(envelope)))
    send = {"eventType": "Send", "mail": mail(destination=[]), "send": {}}
    with pytest.raises(MalformedPayload, match="Message.mail.destination"):
        parse_event(send)


# --- fetching the certificate: a local server stands in for AWS ------------------------------


class ToLocal(httpx.AsyncBaseTransport):
    """Sends every request to a local plain-HTTP server, path kept: the store still
    asks for the genuine https://sns.<region>.amazonaws.com URL."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(scheme="http", host="127.0.0.1", port=self.port)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def closed_port() -> int:
    """A local port with nothing listening on it: a server that is down."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def answering() -> AsyncIterator[Any]:
    """`await answering(status, body)`: the port of a local server answering every GET so."""
    servers: list[asyncio.Server] = []

    async def start(status: int, content: bytes = b"") -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(content)}\r\nConnection: close\r\n\r\n"
            writer.write(head.encode() + content)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def test_a_certificate_server_that_is_down_is_a_temporary_failure() -> None:
    # given: AWS cannot be reached
    store = ses.CertificateStore(transport=ToLocal(closed_port()))
    # when / then: not a refusal (401, which SNS never retries) but a retry later
    with pytest.raises(ses.CertificateUnavailable):
        await store.get(CERT_URL)


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_a_certificate_server_error_is_a_temporary_failure(answering, status: int) -> None:  # type: ignore[no-untyped-def]
    # given
    store = ses.CertificateStore(transport=ToLocal(await answering(status)))
    # when / then
    with pytest.raises(ses.CertificateUnavailable, match=str(status)):
        await store.get(CERT_URL)


async def test_a_certificate_that_aws_does_not_have_is_refused(answering) -> None:  # type: ignore[no-untyped-def]
    # given: AWS answers 404 for the URL the envelope names
    store = ses.CertificateStore(transport=ToLocal(await answering(404)))
    # when / then
    with pytest.raises(WebhookAuthError, match="404"):
        await store.get(CERT_URL)


async def test_a_certificate_served_over_the_transport_is_used_and_cached(answering) -> None:  # type: ignore[no-untyped-def]
    # given
    store = ses.CertificateStore(transport=ToLocal(await answering(200, PEM)))
    # when
    first = await store.get(CERT_URL)
    # then
    assert first.public_key().public_numbers() == KEY.public_key().public_numbers()  # type: ignore[union-attr]
    assert await store.get(CERT_URL) is first
