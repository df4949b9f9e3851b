"""Several e-mails under one provider message id: matched by recipient, never dropped.

A send to several recipients has one message id at most providers, and two
offices may register the same id. An event the id alone cannot place is
matched by its recipient; one that still matches several e-mails (or none) is
kept pending with a reason an operator can read.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from factories import graphql_data, make_tenant, register, reload
from sqlalchemy import select
from test_webhook_routes import count, hooks, now, post_sendgrid, sendgrid_event  # noqa: F401  (hooks: fixture)

from gateway import models
from gateway.enums import EmailStatus
from gateway.ids import encode_id

MESSAGE_ID = "shared-14c5d75ce93"
SG_MESSAGE_ID = f"{MESSAGE_ID}.filter0001.16648.5515E0B88.0"

REGISTER = """
mutation($input: RegisterEmailInput!) {
  registerEmail(input: $input) { email { id emailStatus details { history { status } } } }
}
"""


async def pending_reasons(session_factory) -> list[str | None]:  # type: ignore[no-untyped-def]
    async with session_factory() as session:
        pe = models.PendingEvent
        return list((await session.execute(select(pe.reason).order_by(pe.event_key))).scalars())


async def test_a_send_to_several_recipients_gets_each_event_on_its_recipients_email(hooks, session_factory):  # type: ignore[no-untyped-def]
    # given: one send to two recipients, registered as one e-mail each under one message id
    tenant = await make_tenant(session_factory)
    anna = await register(session_factory, tenant, recipient="anna@example.com", provider_message_id=MESSAGE_ID)
    ben = await register(session_factory, tenant, recipient="Ben@Example.com", provider_message_id=MESSAGE_ID)
    t = now() - timedelta(minutes=1)
    # when: the provider reports each recipient (its case need not be the registered one)
    response = await post_sendgrid(
        hooks,
        [
            sendgrid_event("delivered", "d-anna", t, email="anna@example.com", sg_message_id=SG_MESSAGE_ID),
            sendgrid_event(
                "bounce", "b-ben", t, email="ben@example.COM", sg_message_id=SG_MESSAGE_ID, reason="550 5.1.1 unknown"
            ),
        ],
    )
    # then
    assert response.status_code == 200, response.text
    assert response.json() == {"received": 2, "applied": 2, "pending": 0}
    assert (await reload(session_factory, anna)).status is EmailStatus.DELIVERED
    assert (await reload(session_factory, ben)).status is EmailStatus.DELIVERY_FAILED


async def test_an_event_matching_several_emails_is_kept_pending_with_its_reason(hooks, session_factory, caplog):  # type: ignore[no-untyped-def]
    # given: two offices registered the same message id for the same address
    first, second = await make_tenant(session_factory), await make_tenant(session_factory)
    a = await register(session_factory, first, recipient="client@example.com", provider_message_id=MESSAGE_ID)
    b = await register(session_factory, second, recipient="client@example.com", provider_message_id=MESSAGE_ID)
    # when
    with caplog.at_level(logging.WARNING, logger="gateway.ingest"):
        response = await post_sendgrid(hooks, [sendgrid_event("delivered", "amb", now(), sg_message_id=SG_MESSAGE_ID)])
    # then: neither office sees the other's status, and the event is not lost
    assert response.status_code == 200, response.text
    assert response.json() == {"received": 1, "applied": 0, "pending": 1}
    assert await pending_reasons(session_factory) == ["ambiguous: 2 e-mails"]
    assert (await reload(session_factory, a)).status is (await reload(session_factory, b)).status is EmailStatus.SENT
    assert any("ambiguous" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


async def test_an_event_for_an_unregistered_email_says_so(hooks, session_factory):  # type: ignore[no-untyped-def]
    # given / when
    response = await post_sendgrid(hooks, [sendgrid_event("delivered", "early", now(), sg_message_id="nobody.filter1")])
    # then
    assert response.json() == {"received": 1, "applied": 0, "pending": 1}
    assert await pending_reasons(session_factory) == ["unregistered"]


async def test_a_replayed_event_is_not_counted_as_applied(hooks, session_factory):  # type: ignore[no-untyped-def]
    # given: an event already recorded
    tenant = await make_tenant(session_factory)
    await register(session_factory, tenant, provider_message_id=MESSAGE_ID)
    batch = [sendgrid_event("delivered", "once", now(), sg_message_id=SG_MESSAGE_ID)]
    assert (await post_sendgrid(hooks, batch)).json() == {"received": 1, "applied": 1, "pending": 0}
    # when: the provider sends it again
    again = await post_sendgrid(hooks, batch)
    # then
    assert again.status_code == 200
    assert again.json() == {"received": 1, "applied": 0, "pending": 0}
    assert await count(session_factory, models.EmailEvent) == 1


async def test_a_batch_mixing_retries_and_new_events_counts_only_the_new_as_applied(hooks, session_factory):  # type: ignore[no-untyped-def]
    # given: one event recorded and one kept pending, from an earlier batch
    tenant = await make_tenant(session_factory)
    email = await register(session_factory, tenant, provider_message_id=MESSAGE_ID)
    t = now() - timedelta(minutes=5)
    recorded = sendgrid_event("processed", "r-1", t, sg_message_id=SG_MESSAGE_ID)
    unknown = sendgrid_event("delivered", "u-1", t, sg_message_id="nobody.filter1")
    assert (await post_sendgrid(hooks, [recorded, unknown])).json() == {"received": 2, "applied": 1, "pending": 1}
    # when: SendGrid's next batch retries both, amid new events (one matched by the custom
    # argument, one by message id and twice in the batch)
    by_ref = sendgrid_event("delivered", "n-1", t + timedelta(minutes=1), gateway_email_id=encode_id("Email", email.id))
    twice = sendgrid_event("open", "n-2", t + timedelta(minutes=2), sg_message_id=SG_MESSAGE_ID)
    response = await post_sendgrid(hooks, [recorded, by_ref, unknown, twice, twice])
    # then: `applied` is the events recorded for the first time; a retry of a pending event
    # is kept pending again (once), and counted as pending
    assert response.status_code == 200, response.text
    assert response.json() == {"received": 5, "applied": 2, "pending": 1}
    assert await count(session_factory, models.EmailEvent) == 3
    assert await count(session_factory, models.PendingEvent) == 1
    assert (await reload(session_factory, email)).status is EmailStatus.OPENED


async def test_pending_events_of_a_multi_recipient_send_go_to_their_recipients_on_registration(
    hooks,
    session_factory,
    schema,
    make_context,  # type: ignore[no-untyped-def]
):
    # given: the provider reports both recipients before the sender registered either
    t = now() - timedelta(minutes=1)
    response = await post_sendgrid(
        hooks,
        [
            sendgrid_event("delivered", "p-anna", t, email="anna@example.com", sg_message_id=SG_MESSAGE_ID),
            sendgrid_event(
                "bounce", "p-ben", t, email="ben@example.com", sg_message_id=SG_MESSAGE_ID, reason="550 5.1.1 unknown"
            ),
        ],
    )
    assert response.json() == {"received": 2, "applied": 0, "pending": 2}
    tenant = await make_tenant(session_factory)
    context = make_context(tenant.principal)

    def registration(name: str) -> dict[str, object]:
        return {
            "input": {
                "externalId": name,
                "subject": "Invoice",
                "recipient": f"{name.upper()}@example.com",
                "sentAt": (t - timedelta(minutes=1)).isoformat(),
                "providerMessageId": MESSAGE_ID,
            }
        }

    # when: one e-mail per recipient registers, one after the other
    anna = graphql_data(await schema.execute(REGISTER, variable_values=registration("anna"), context_value=context))
    pending_after_anna = await count(session_factory, models.PendingEvent)
    ben = graphql_data(await schema.execute(REGISTER, variable_values=registration("ben"), context_value=context))
    # then: each got its own recipient's event, and nothing is left over
    assert anna["registerEmail"]["email"]["emailStatus"] == "DELIVERED"
    assert [h["status"] for h in anna["registerEmail"]["email"]["details"]["history"]] == ["DELIVERED"]
    assert pending_after_anna == 1
    assert ben["registerEmail"]["email"]["emailStatus"] == "DELIVERY_FAILED"
    assert await count(session_factory, models.PendingEvent) == 0
