"""The webhook endpoints end to end: real formats, real signatures, into the database.

Signing helpers come from the providers' own test modules, which sign exactly
the way each provider documents.
"""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import test_provider_mailgun as mg
import test_provider_resend as rs
import test_provider_sendgrid as sg
import test_provider_ses as sns
from asgi_lifespan import LifespanManager
from conftest import make_settings
from factories import graphql_data, make_tenant, register, reload
from httpx import ASGITransport, AsyncClient
from sqlalchemy import func, select

from gateway import models
from gateway.app import create_app
from gateway.enums import EmailStatus, FailureCategory
from gateway.ids import encode_id
from gateway.webhooks.providers import ses

POSTMARK = ("postmark-user", "a-long-postmark-password")


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def secrets(**overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        "sendgrid_verification_key": sg.PUBLIC_KEY,
        "mailgun_signing_key": mg.SIGNING_KEY,
        "postmark_username": POSTMARK[0],
        "postmark_password": POSTMARK[1],
        "resend_webhook_secret": rs.SECRET,
        "ses_topic_arns": [sns.TOPIC],
        "purge_interval_seconds": 0,
    }
    values.update(overrides)
    return values


async def app_client(database_url: str, tmp_path, **overrides: object):  # type: ignore[no-untyped-def]
    app = create_app(make_settings(database_url, tmp_path, **secrets(**overrides)))
    manager = LifespanManager(app)
    await manager.__aenter__()
    client = AsyncClient(transport=ASGITransport(app=manager.app), base_url="https://gateway.test")
    return manager, client


@pytest.fixture
async def hooks(backend, tmp_path, session_factory):  # type: ignore[no-untyped-def]
    manager, client = await app_client(backend, tmp_path)
    yield client
    await client.aclose()
    await manager.__aexit__(None, None, None)


async def count(session_factory, model) -> int:  # type: ignore[no-untyped-def]
    async with session_factory() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


def sendgrid_event(kind: str, event_id: str, at: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "email": "client@example.com",
        "timestamp": int(at.timestamp()),
        "event": kind,
        "sg_event_id": event_id,
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        **extra,
    }


async def post_sendgrid(client, events: list[dict[str, Any]], *, key=None, at=None):  # type: ignore[no-untyped-def]
    body = json.dumps(events).encode()
    headers = sg.sign(body, at=at or now(), **({"key": key} if key else {}))
    return await client.post("/webhooks/sendgrid", content=body, headers=headers)


async def test_sendgrid_batch_matches_by_custom_arg_and_message_id_prefix(hooks, session_factory):  # type: ignore[no-untyped-def]
    # given: two registered e-mails; the sender registered SendGrid's X-Message-Id
    tenant = await make_tenant(session_factory)
    first = await register(session_factory, tenant, provider_message_id="14c5d75ce93.dfd.64b469")
    second = await register(session_factory, tenant)
    t = now() - timedelta(minutes=1)
    batch = [
        sendgrid_event(
            "delivered",
            "ev-1",
            t,
            sg_message_id="14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
            response="250 OK",
        ),
        sendgrid_event(
            "open",
            "ev-2",
            t + timedelta(seconds=30),
            sg_message_id="14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
            sg_machine_open=True,
            useragent="Mozilla/5.0",
        ),
        # an asynchronous bounce has no sg_message_id: the custom arg finds it
        sendgrid_event(
            "bounce",
            "ev-3",
            t,
            gateway_email_id=encode_id("Email", second.id),
            type="bounce",
            status="5.1.1",
            reason="550 5.1.1 The email account that you tried to reach does not exist",
        ),
    ]
    # when
    response = await post_sendgrid(hooks, batch)
    # then
    assert response.status_code == 200, response.text
    assert response.json() == {"received": 3, "applied": 3, "pending": 0}
    opened, failed = await reload(session_factory, first), await reload(session_factory, second)
    assert opened.status is EmailStatus.OPENED and opened.opens_likely_automated is True
    assert failed.status is EmailStatus.DELIVERY_FAILED
    assert failed.failure_category in (FailureCategory.INVALID_RECIPIENT, FailureCategory.HARD_BOUNCE)
    assert failed.failure_smtp_code == 550


async def test_a_retried_batch_is_recorded_once(hooks, session_factory):  # type: ignore[no-untyped-def]
    tenant = await make_tenant(session_factory)
    email = await register(session_factory, tenant)
    batch = [
        sendgrid_event("delivered", f"dup-{i}", now(), gateway_email_id=encode_id("Email", email.id)) for i in range(3)
    ]
    for _ in range(3):
        assert (await post_sendgrid(hooks, batch)).status_code == 200
    assert await count(session_factory, models.EmailEvent) == 3
    assert await count(session_factory, models.StatusChange) == 2  # SENT, DELIVERED


async def test_out_of_order_batches_end_in_the_same_status(hooks, session_factory):  # type: ignore[no-untyped-def]
    tenant = await make_tenant(session_factory)
    a, b = await register(session_factory, tenant), await register(session_factory, tenant)
    t = now() - timedelta(minutes=10)

    def events(email: models.Email) -> list[dict[str, Any]]:
        ref = encode_id("Email", email.id)
        return [
            sendgrid_event("deferred", f"{ref}-1", t, gateway_email_id=ref, response="421 try later"),
            sendgrid_event("delivered", f"{ref}-2", t + timedelta(minutes=5), gateway_email_id=ref),
            sendgrid_event("open", f"{ref}-3", t + timedelta(minutes=9), gateway_email_id=ref, useragent="Outlook"),
        ]

    for event in events(a):
        await post_sendgrid(hooks, [event])
    for event in reversed(events(b)):
        await post_sendgrid(hooks, [event])
    ra, rb = await reload(session_factory, a), await reload(session_factory, b)
    assert ra.status is rb.status is EmailStatus.OPENED
    assert (ra.status_changed_at, ra.delivered_at) == (rb.status_changed_at, rb.delivered_at)


async def test_a_deferral_never_fails_the_email(hooks, session_factory):  # type: ignore[no-untyped-def]
    tenant = await make_tenant(session_factory)
    email = await register(session_factory, tenant)
    ref = encode_id("Email", email.id)
    await post_sendgrid(
        hooks, [sendgrid_event("deferred", "d1", now(), gateway_email_id=ref, response="450 4.2.1 mailbox busy")]
    )
    assert (await reload(session_factory, email)).status is EmailStatus.SENT


@pytest.mark.parametrize(
    "tamper",
    ["forged", "stale", "future", "body", "missing"],
)
async def test_sendgrid_refuses_bad_signatures_and_stores_nothing(hooks, session_factory, tamper):  # type: ignore[no-untyped-def]
    tenant = await make_tenant(session_factory)
    email = await register(session_factory, tenant)
    body = json.dumps([sendgrid_event("delivered", "x", now(), gateway_email_id=encode_id("Email", email.id))]).encode()
    headers = sg.sign(body, at=now())
    if tamper == "forged":
        headers = sg.sign(body, at=now(), key=sg.OTHER_KEY)
    elif tamper == "stale":
        headers = sg.sign(body, at=now() - timedelta(minutes=6))
    elif tamper == "future":
        headers = sg.sign(body, at=now() + timedelta(minutes=6))
    elif tamper == "body":
        body = body.replace(b"delivered", b"bounce")
    else:
        headers = {"content-type": "application/json"}
    response = await hooks.post("/webhooks/sendgrid", content=body, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]
    assert await count(session_factory, models.EmailEvent) == 0


async def test_a_malformed_batch_is_refused_whole(hooks, session_factory):  # type: ignore[no-untyped-def]
    tenant = await make_tenant(session_factory)
    email = await register(session_factory, tenant)
    good = sendgrid_event("delivered", "good", now(), gateway_email_id=encode_id("Email", email.id))
    for events in ([good, {"event": "delivered"}], [good, "not an object"]):
        response = await post_sendgrid(hooks, events)
        assert response.status_code == 400, response.text
    response = await hooks.post("/webhooks/sendgrid", content=b"{nope", headers=sg.sign(b"{nope", at=now()))
    assert response.status_code == 400
    assert await count(session_factory, models.EmailEvent) == 0


async def test_an_unconfigured_provider_refuses_everything(backend, tmp_path, session_factory):  # type: ignore[no-untyped-def]
    manager, client = await app_client(
        backend,
        tmp_path,
        sendgrid_verification_key=None,
        mailgun_signing_key=None,
        postmark_password=None,
        resend_webhook_secret=None,
        ses_topic_arns=[],
    )
    try:
        body = json.dumps([sendgrid_event("delivered", "x", now())]).encode()
        assert (
            await client.post("/webhooks/sendgrid", content=body, headers=sg.sign(body, at=now()))
        ).status_code == 403
        assert (await client.post("/webhooks/mailgun", content=mg.signed(mg.DELIVERED, at=now()))).status_code == 403
        assert (await client.post("/webhooks/postmark", json={}, auth=POSTMARK)).status_code == 403
        assert (
            await client.post("/webhooks/resend", content=b"{}", headers=rs.sign(b"{}", at=now()))
        ).status_code == 403
        assert (await client.post("/webhooks/ses", content=b"{}")).status_code == 403
    finally:
        await client.aclose()
        await manager.__aexit__(None, None, None)
    assert await count(session_factory, models.PendingEvent) == 0


async def test_an_event_that_beats_the_registration_is_applied_when_it_arrives(
    hooks, session_factory, schema, make_context
):  # type: ignore[no-untyped-def]
    # given: SendGrid reports delivery before the sender registered the e-mail
    t = now() - timedelta(minutes=2)
    response = await post_sendgrid(
        hooks, [sendgrid_event("delivered", "early", t, sg_message_id="early-msg.filter0001.1")]
    )
    assert response.json() == {"received": 1, "applied": 0, "pending": 1}
    # when
    tenant = await make_tenant(session_factory)
    registration = {
        "externalId": "late",
        "subject": "s",
        "recipient": "a@example.com",
        "sentAt": (t - timedelta(minutes=1)).isoformat(),
        "providerMessageId": "<early-msg>",
    }
    query = "mutation($i: RegisterEmailInput!) { registerEmail(input: $i) { email { emailStatus details { history { status } } } } }"
    data = graphql_data(
        await schema.execute(query, variable_values={"i": registration}, context_value=make_context(tenant.principal))
    )
    # then
    assert data["registerEmail"]["email"]["emailStatus"] == "DELIVERED"
    assert [h["status"] for h in data["registerEmail"]["email"]["details"]["history"]] == ["DELIVERED"]
    assert await count(session_factory, models.PendingEvent) == 0
    assert await count(session_factory, models.StatusChange) == 2


async def test_mailgun_accepts_a_signed_event_and_refuses_a_replayed_token(hooks, session_factory):  # type: ignore[no-untyped-def]
    tenant = await make_tenant(session_factory)
    email = await register(session_factory, tenant, provider_message_id="20240501120000.1.ABCDEF@mg.example.com")
    delivered = {**mg.DELIVERED, "timestamp": now().timestamp()}
    delivered["message"] = {
        **delivered["message"],
        "headers": {**delivered["message"]["headers"], "message-id": "20240501120000.1.ABCDEF@mg.example.com"},
    }
    body = mg.signed(delivered, at=now(), token="t" * 50)
    first = await hooks.post("/webhooks/mailgun", content=body)
    assert first.status_code == 200, first.text and first.json()["applied"] == 1
    again = await hooks.post("/webhooks/mailgun", content=body)  # Mailgun retrying the same request
    assert again.status_code == 200
    forged_body = mg.signed(
        {**delivered, "event": "failed", "severity": "permanent", "reason": "bounce"}, at=now(), token="t" * 50
    )
    replay = await hooks.post("/webhooks/mailgun", content=forged_body)
    assert replay.status_code == 403
    assert (await reload(session_factory, email)).status is EmailStatus.DELIVERED
    assert (await hooks.post("/webhooks/mailgun", content=b"{not json")).status_code == 406
    bad = mg.signed(delivered, at=now(), key="key-someone-else", token="u" * 50)
    assert (await hooks.post("/webhooks/mailgun", content=bad)).status_code == 401
    assert await count(session_factory, models.EmailEvent) == 1


async def test_postmark_checks_basic_auth(hooks, session_factory):  # type: ignore[no-untyped-def]
    tenant = await make_tenant(session_factory)
    email = await register(session_factory, tenant, provider_message_id="883953f4-6105-42a2-a16a-77a8eac79483")
    delivery = {
        "RecordType": "Delivery",
        "ServerID": 23,
        "MessageStream": "outbound",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Recipient": "client@example.com",
        "Tag": "invoice",
        "DeliveredAt": now().isoformat().replace("+00:00", "Z"),
        "Details": "Test delivery webhook details",
        "Metadata": {},
    }
    assert (await hooks.post("/webhooks/postmark", json=delivery, auth=("postmark-user", "wrong"))).status_code == 401
    assert (await hooks.post("/webhooks/postmark", json=delivery)).status_code == 401
    assert await count(session_factory, models.EmailEvent) == 0
    response = await hooks.post("/webhooks/postmark", json=delivery, auth=POSTMARK)
    assert response.status_code == 200, response.text
    assert (await reload(session_factory, email)).status is EmailStatus.DELIVERED
    assert (
        await hooks.post(
            "/webhooks/postmark", content=b"[]", auth=POSTMARK, headers={"content-type": "application/json"}
        )
    ).status_code == 400


async def test_resend_checks_the_svix_signature(hooks, session_factory):  # type: ignore[no-untyped-def]
    tenant = await make_tenant(session_factory)
    email = await register(session_factory, tenant, provider_message_id="4ef9a417-02e9-4d39-ad75-9611e0fcc33c")
    payload = {
        "type": "email.delivered",
        "created_at": now().isoformat().replace("+00:00", "Z"),
        "data": {
            "email_id": "4ef9a417-02e9-4d39-ad75-9611e0fcc33c",
            "from": "Office <office@example.com>",
            "to": ["client@example.com"],
            "subject": "Invoice",
            "created_at": now().isoformat(),
        },
    }
    body = json.dumps(payload).encode()
    assert (
        await hooks.post("/webhooks/resend", content=body, headers=rs.sign(body, at=now(), secret=rs.OTHER_SECRET))
    ).status_code == 401
    response = await hooks.post("/webhooks/resend", content=body, headers=rs.sign(body, at=now()))
    assert response.status_code == 200, response.text
    assert (await reload(session_factory, email)).status is EmailStatus.DELIVERED


@pytest.fixture
def fake_certificates(monkeypatch):  # type: ignore[no-untyped-def]
    fetch = sns.FakeFetch(sns.certificate(not_before=now() - timedelta(days=1)))
    monkeypatch.setattr(ses, "_httpx_fetch", fetch)
    return fetch


async def test_ses_notifications_and_subscription_confirmation(
    backend, tmp_path, session_factory, fake_certificates, monkeypatch
):  # type: ignore[no-untyped-def]
    from gateway.webhooks import routes

    confirmed: list[str] = []

    async def confirm(url: str):  # type: ignore[no-untyped-def]
        confirmed.append(url)
        return routes.JSONResponse({"subscribed": True})

    monkeypatch.setattr(routes, "_confirm_subscription", confirm)
    manager, client = await app_client(backend, tmp_path)
    try:
        tenant = await make_tenant(session_factory)
        email = await register(session_factory, tenant, provider_message_id=sns.SES_MESSAGE_ID)
        stamp = now().isoformat().replace("+00:00", "Z")
        delivery = {
            "eventType": "Delivery",
            "mail": sns.mail(timestamp=stamp),
            "delivery": {
                "timestamp": stamp,
                "processingTimeMillis": 546,
                "recipients": ["client@example.com"],
                "smtpResponse": "250 ok dirdel",
                "reportingMTA": "a8-70.smtp-out.amazonses.com",
            },
        }
        envelope = sns.notification(delivery, Timestamp=stamp)
        response = await client.post("/webhooks/ses", content=sns.body(envelope))
        assert response.status_code == 200, response.text
        assert (await reload(session_factory, email)).status is EmailStatus.DELIVERED
        subscription = sns.confirmation()
        subscription["Timestamp"] = stamp
        sns.sns_sign(subscription)
        assert (await client.post("/webhooks/ses", content=sns.body(subscription))).status_code == 200
        assert confirmed == [subscription["SubscribeURL"]]
        wrong_topic = sns.notification(delivery, Timestamp=stamp, TopicArn="arn:aws:sns:eu-west-1:999:other")
        assert (await client.post("/webhooks/ses", content=sns.body(wrong_topic))).status_code == 401
        forged = sns.notification(delivery, Timestamp=stamp)
        forged["Message"] = forged["Message"].replace("Delivery", "Bounce")
        assert (await client.post("/webhooks/ses", content=sns.body(forged))).status_code == 401
        assert len(fake_certificates.calls) == 1  # cached
    finally:
        await client.aclose()
        await manager.__aexit__(None, None, None)


async def test_ses_answers_503_when_the_signing_certificate_cannot_be_fetched(
    backend, tmp_path, session_factory, monkeypatch
):  # type: ignore[no-untyped-def]
    # given: AWS's certificate server is down (a local port with nothing listening)
    monkeypatch.setattr(
        ses, "_httpx_fetch", functools.partial(ses._httpx_fetch, transport=sns.ToLocal(sns.closed_port()))
    )
    manager, client = await app_client(backend, tmp_path)
    try:
        stamp = now().isoformat().replace("+00:00", "Z")
        envelope = sns.notification({**sns.BOUNCE, "mail": sns.mail(timestamp=stamp)}, Timestamp=stamp)
        # when
        response = await client.post("/webhooks/ses", content=sns.body(envelope))
        # then: SNS retries a 5xx, and drops the message for good on a 401
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "30"
        assert await count(session_factory, models.EmailEvent) + await count(session_factory, models.PendingEvent) == 0
    finally:
        await client.aclose()
        await manager.__aexit__(None, None, None)


async def test_database_down_answers_503_so_the_provider_retries(tmp_path):  # type: ignore[no-untyped-def]
    manager, client = await app_client("postgresql+asyncpg://postgres@127.0.0.1:1/none", tmp_path)
    try:
        response = await post_sendgrid(client, [sendgrid_event("delivered", "x", now(), sg_message_id="m.filter1")])
        assert response.status_code == 503
        assert response.headers["retry-after"] == "30"
    finally:
        await client.aclose()
        await manager.__aexit__(None, None, None)


async def test_the_body_size_is_bounded(hooks):  # type: ignore[no-untyped-def]
    body = b"[" + b" " * (5 * 1024 * 1024 + 1) + b"]"
    response = await hooks.post("/webhooks/sendgrid", content=body, headers=sg.sign(body, at=now()))
    assert response.status_code == 413
