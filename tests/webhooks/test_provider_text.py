"""Text from providers is stored whatever it holds: one odd field never refuses a batch.

PostgreSQL refuses the NUL character (0x00) in text; a provider that keeps
retrying a refused batch ends up losing every event in it.
"""

from __future__ import annotations

import json
from datetime import timedelta

import test_provider_mailgun as mg
import test_provider_resend as rs
from factories import make_tenant, register, reload
from test_webhook_routes import count, hooks, now, post_sendgrid, sendgrid_event  # noqa: F401  (hooks: fixture)

from gateway import models
from gateway.enums import EmailStatus
from gateway.events import IncomingEvent
from gateway.ids import encode_id

NUL = "\u0000"


def test_an_incoming_event_replaces_what_postgresql_text_refuses() -> None:
    # given: a NUL and a lone surrogate in the provider's text
    # when
    event = IncomingEvent(
        source="sendgrid",
        key=f"k{NUL}1",
        status=EmailStatus.SENT,
        occurred_at=now(),
        description=f"d{NUL}",
        provider_message_id=f"m{NUL}",
        email_ref=f"r{NUL}",
        recipient=f"a{NUL}@example.com",
        reason=f"x{NUL}\ud800y",
        user_agent=f"ua{NUL}",
        ip=f"1.2.3.4{NUL}",
    )
    # then
    text = [
        event.key,
        event.description,
        event.provider_message_id,
        event.email_ref,
        event.recipient,
        event.reason,
        event.user_agent,
        event.ip,
    ]
    assert not any(NUL in t or "\ud800" in t for t in text if t is not None)
    assert event.reason == "x\ufffd\ufffdy"


async def test_sendgrid_batch_with_a_nul_is_applied_whole(hooks, session_factory):  # type: ignore[no-untyped-def]
    # given: two e-mails; one event of the batch carries a NUL in its reason
    tenant = await make_tenant(session_factory)
    first, second = await register(session_factory, tenant), await register(session_factory, tenant)
    t = now() - timedelta(minutes=1)
    batch = [
        sendgrid_event(
            "bounce",
            "nul-1",
            t,
            gateway_email_id=encode_id("Email", first.id),
            type="bounce",
            status="5.0.0",
            reason=f"x{NUL}",
        ),
        sendgrid_event("delivered", "nul-2", t, gateway_email_id=encode_id("Email", second.id)),
    ]
    # when
    response = await post_sendgrid(hooks, batch)
    # then
    assert response.status_code == 200, response.text
    assert response.json() == {"received": 2, "applied": 2, "pending": 0}
    failed = await reload(session_factory, first)
    assert failed.status is EmailStatus.DELIVERY_FAILED and failed.failure_reason == "x\ufffd"
    assert (await reload(session_factory, second)).status is EmailStatus.DELIVERED


async def test_mailgun_event_with_a_nul_is_applied(hooks, session_factory):  # type: ignore[no-untyped-def]
    # given
    tenant = await make_tenant(session_factory)
    email = await register(session_factory, tenant)
    data = mg.event_data(
        "failed",
        severity="permanent",
        reason=f"bounce{NUL}",
        timestamp=now().timestamp(),
        **{
            "user-variables": {"gateway_email_id": encode_id("Email", email.id)},
            "delivery-status": {"code": 550, "message": f"550 5.1.1 no such user{NUL}", "description": ""},
        },
    )
    # when
    response = await hooks.post("/webhooks/mailgun", content=mg.signed(data, at=now(), token="n" * 50))
    # then
    assert response.status_code == 200, response.text
    assert response.json() == {"received": 1, "applied": 1, "pending": 0}
    assert (await reload(session_factory, email)).status is EmailStatus.DELIVERY_FAILED


async def test_resend_batch_with_a_nul_in_the_email_id_is_applied(hooks, session_factory):  # type: ignore[no-untyped-def]
    # given: a delivery to two recipients whose message id carries a NUL; the tag finds the e-mail
    tenant = await make_tenant(session_factory)
    email = await register(session_factory, tenant)
    payload = rs.event(
        "email.delivered",
        email_id=f"{rs.EMAIL_ID}{NUL}",
        to=["a@example.com", "b@example.com"],
        tags={"gateway_email_id": encode_id("Email", email.id)},
    )
    payload["created_at"] = now().isoformat().replace("+00:00", "Z")
    body = json.dumps(payload).encode()
    # when
    response = await hooks.post("/webhooks/resend", content=body, headers=rs.sign(body, at=now()))
    # then
    assert response.status_code == 200, response.text
    assert response.json() == {"received": 2, "applied": 2, "pending": 0}
    assert (await reload(session_factory, email)).status is EmailStatus.DELIVERED
    assert await count(session_factory, models.EmailEvent) == 2
