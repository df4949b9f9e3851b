"""registerEmail and recordEmailEvent: idempotency, upserts, order-independence, scopes."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta

import pytest
from factories import T0, event, graphql_data, graphql_error, make_tenant, record, register, reload
from sqlalchemy import func, select

from gateway import models
from gateway.enums import EmailStatus
from gateway.ids import decode_id_of
from gateway.ingest import fact_of
from gateway.pixel import verify_token
from gateway.status import project

REGISTER = """
mutation Register($input: RegisterEmailInput!) {
  registerEmail(input: $input) {
    trackingPixelUrl
    email { id externalId subject emailStatus relation { id name } documents { id title emailStatus } invoice { id number invoiceStatus emailStatus } }
  }
}
"""

RECORD = """
mutation Record($input: RecordEmailEventInput!) {
  recordEmailEvent(input: $input) { id emailStatus details { status failure { category smtpCode } history { status description } } }
}
"""


def registration(n: int = 1, **overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "externalId": f"mail-{n}",
        "subject": f"Your annual accounts {n}",
        "recipient": f"client{n}@example.com",
        "sentAt": (T0 + timedelta(minutes=n)).isoformat(),
        "providerMessageId": f"provider-{n}",
        "relation": {"externalId": "rel-1", "name": "Bakery Smit"},
        "documents": [{"externalId": "doc-1", "title": "Annual accounts"}],
        "invoice": {"externalId": "inv-1", "number": "2026-001"},
    }
    data.update(overrides)
    return data


async def count_rows(session_factory, model) -> int:  # type: ignore[no-untyped-def]
    async with session_factory() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def test_register_creates_the_email_with_what_it_carries(schema, make_context, session_factory, settings):  # type: ignore[no-untyped-def]
    # given
    tenant = await make_tenant(session_factory)
    # when
    data = graphql_data(
        await schema.execute(
            REGISTER, variable_values={"input": registration()}, context_value=make_context(tenant.principal)
        )
    )
    # then
    payload = data["registerEmail"]
    email = payload["email"]
    assert email["emailStatus"] == "SENT"
    assert email["relation"]["name"] == "Bakery Smit"
    assert email["documents"] == [
        {"id": email["documents"][0]["id"], "title": "Annual accounts", "emailStatus": "SENT"}
    ]
    assert email["invoice"]["invoiceStatus"] == "ISSUED" and email["invoice"]["emailStatus"] == "SENT"
    url = payload["trackingPixelUrl"]
    assert url.startswith("https://gateway.example.test/t/") and url.endswith(".gif")
    token = url.removeprefix("https://gateway.example.test/t/").removesuffix(".gif")
    tracking_id = verify_token(settings.signing_key(), token)
    async with session_factory() as session:
        stored = await session.get(models.Email, decode_id_of(email["id"], "Email"))
    assert stored is not None and tracking_id == stored.tracking_id
    # the token is the random tracking id and its MAC: no e-mail id in it
    assert token.split(".")[0] == stored.tracking_id
    assert email["id"] not in url
    assert verify_token(settings.signing_key(), token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert await count_rows(session_factory, models.StatusChange) == 1


async def test_register_twice_returns_the_same_email_and_writes_nothing_more(schema, make_context, session_factory):  # type: ignore[no-untyped-def]
    tenant = await make_tenant(session_factory)
    context = make_context(tenant.principal)
    first = graphql_data(
        await schema.execute(REGISTER, variable_values={"input": registration()}, context_value=context)
    )
    again = graphql_data(
        await schema.execute(
            REGISTER,
            variable_values={"input": registration(subject="changed")},
            context_value=make_context(tenant.principal),
        )
    )
    assert again["registerEmail"]["email"]["id"] == first["registerEmail"]["email"]["id"]
    assert again["registerEmail"]["email"]["subject"] == "Your annual accounts 1"
    assert again["registerEmail"]["trackingPixelUrl"] == first["registerEmail"]["trackingPixelUrl"]
    assert await count_rows(session_factory, models.Email) == 1
    assert await count_rows(session_factory, models.EmailDocument) == 1
    assert await count_rows(session_factory, models.StatusChange) == 1


async def test_register_upserts_relation_documents_and_invoice_by_external_id(schema, make_context, session_factory):  # type: ignore[no-untyped-def]
    tenant = await make_tenant(session_factory)
    first = graphql_data(
        await schema.execute(
            REGISTER, variable_values={"input": registration(1)}, context_value=make_context(tenant.principal)
        )
    )
    second_input = registration(
        2,
        relation={"externalId": "rel-1", "name": "Bakery Smit & Sons"},
        documents=[{"externalId": "doc-1", "title": "Annual accounts (final)"}],
        invoice={"externalId": "inv-1", "number": "2026-001", "invoiceStatus": "PAID"},
    )
    second = graphql_data(
        await schema.execute(
            REGISTER, variable_values={"input": second_input}, context_value=make_context(tenant.principal)
        )
    )
    a, b = first["registerEmail"]["email"], second["registerEmail"]["email"]
    assert a["relation"]["id"] == b["relation"]["id"] and b["relation"]["name"] == "Bakery Smit & Sons"
    assert (
        a["documents"][0]["id"] == b["documents"][0]["id"] and b["documents"][0]["title"] == "Annual accounts (final)"
    )
    assert a["invoice"]["id"] == b["invoice"]["id"] and b["invoice"]["invoiceStatus"] == "PAID"
    assert await count_rows(session_factory, models.Relation) == 1
    assert await count_rows(session_factory, models.Document) == 1
    async with session_factory() as session:
        document = (await session.execute(select(models.Document))).scalar_one()
    assert document.latest_email_id == decode_id_of(b["id"], "Email")


async def test_concurrent_registrations_of_one_external_id_make_one_email(session_factory):  # type: ignore[no-untyped-def]
    from gateway import ingest
    from gateway.repositories.registration import DocumentData, Registration, RelationData

    tenant = await make_tenant(session_factory)
    data = Registration(
        external_id="same",
        subject="s",
        recipient="a@example.com",
        sent_at=T0,
        relation=RelationData("r", "R"),
        documents=(DocumentData("d", "D"),),
    )

    async def one() -> int:
        async with session_factory() as session:
            email = await ingest.register(session=session, tenant_id=tenant.id, data=data, publisher=None)
            return email.id  # type: ignore[return-value]

    ids = await asyncio.gather(*(one() for _ in range(6)))
    assert len(set(ids)) == 1
    assert await count_rows(session_factory, models.Email) == 1
    assert await count_rows(session_factory, models.EmailDocument) == 1
    assert await count_rows(session_factory, models.StatusChange) == 1


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"externalId": "  "}, "`externalId` must not be empty"),
        ({"recipient": "not-an-address"}, "`recipient` 'not-an-address' is not an e-mail address"),
        ({"subject": "x" * 1001}, "`subject` is longer than 1000 characters"),
        (
            {"documents": [{"externalId": f"d{i}", "title": "t"} for i in range(101)]},
            "Variable \"$input\" at 'input.documents' has 101 distinct entries; at most 100 are accepted",
        ),
    ],
)
async def test_register_rejects_bad_input_and_writes_nothing(schema, make_context, session_factory, overrides, message):  # type: ignore[no-untyped-def]
    tenant = await make_tenant(session_factory)
    result = await schema.execute(
        REGISTER, variable_values={"input": registration(**overrides)}, context_value=make_context(tenant.principal)
    )
    assert graphql_error(result) == (message, "BAD_USER_INPUT")
    assert await count_rows(session_factory, models.Email) == 0
    assert await count_rows(session_factory, models.Relation) == 0


async def test_a_read_only_key_cannot_mutate(schema, make_context, session_factory):  # type: ignore[no-untyped-def]
    tenant = await make_tenant(session_factory)
    result = await schema.execute(
        REGISTER, variable_values={"input": registration()}, context_value=make_context(tenant.read_principal)
    )
    assert graphql_error(result) == ("this API key lacks the 'write' scope", "FORBIDDEN")
    assert await count_rows(session_factory, models.Email) == 0


async def test_record_event_is_idempotent_on_its_key(schema, make_context, session_factory):  # type: ignore[no-untyped-def]
    # given
    tenant = await make_tenant(session_factory)
    email = await register(session_factory, tenant)
    from gateway.ids import encode_id

    event_input = {
        "emailId": encode_id("Email", email.id),
        "status": "DELIVERY_FAILED",
        "occurredAt": (T0 + timedelta(hours=1)).isoformat(),
        "eventKey": "crm-42",
        "description": "Mailbox does not exist",
        "failureCategory": "INVALID_RECIPIENT",
        "smtpCode": 550,
    }
    # when: the same event twice
    for _ in range(2):
        data = graphql_data(
            await schema.execute(
                RECORD, variable_values={"input": event_input}, context_value=make_context(tenant.principal)
            )
        )
    # then
    details = data["recordEmailEvent"]["details"]
    assert data["recordEmailEvent"]["emailStatus"] == "DELIVERY_FAILED"
    assert details["failure"] == {"category": "INVALID_RECIPIENT", "smtpCode": 550}
    assert details["history"] == [{"status": "DELIVERY_FAILED", "description": "Mailbox does not exist"}]
    assert await count_rows(session_factory, models.EmailEvent) == 1
    assert await count_rows(session_factory, models.StatusChange) == 2  # SENT, then DELIVERY_FAILED


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"status": "DELIVERED", "failureCategory": "HARD_BOUNCE"},
            "`failureCategory` goes with status DELIVERY_FAILED only",
        ),
        ({"smtpCode": 99}, "`smtpCode` must be an SMTP reply code (200-599), got 99"),
        ({"eventKey": ""}, "`eventKey` must not be empty"),
    ],
)
async def test_record_event_rejects_bad_input(schema, make_context, session_factory, overrides, message):  # type: ignore[no-untyped-def]
    from gateway.ids import encode_id

    tenant = await make_tenant(session_factory)
    email = await register(session_factory, tenant)
    event_input = {
        "emailId": encode_id("Email", email.id),
        "status": "DELIVERED",
        "occurredAt": T0.isoformat(),
        "eventKey": "k",
        **overrides,
    }
    result = await schema.execute(
        RECORD, variable_values={"input": event_input}, context_value=make_context(tenant.principal)
    )
    assert graphql_error(result) == (message, "BAD_USER_INPUT")
    assert await count_rows(session_factory, models.EmailEvent) == 0


async def test_events_in_any_order_give_the_same_stored_status(session_factory):  # type: ignore[no-untyped-def]
    tenant = await make_tenant(session_factory)
    S, D, F, O = EmailStatus.SENT, EmailStatus.DELIVERED, EmailStatus.DELIVERY_FAILED, EmailStatus.OPENED
    events = [
        event(D, T0 + timedelta(minutes=1), "d"),
        event(F, T0 + timedelta(minutes=2), "f"),
        event(O, T0 + timedelta(minutes=3), "o"),
        event(S, T0, "s"),
    ]
    outcomes = set()
    for n, order in enumerate(itertools.permutations(events)):
        email = await register(session_factory, tenant, n=1000 + n)
        for e in order:
            await record(session_factory, email, e)
        await record(session_factory, email, order[0])  # a duplicate delivery
        stored = await reload(session_factory, email)
        outcomes.add((stored.status, stored.status_changed_at, stored.delivered_at, stored.open_count))
    assert outcomes == {(O, T0 + timedelta(minutes=3), T0 + timedelta(minutes=1), 1)}


async def test_concurrent_ingestion_into_one_email_loses_no_event(session_factory):  # type: ignore[no-untyped-def]
    # given: one e-mail, 20 writers each with its own event and transaction
    tenant = await make_tenant(session_factory)
    email = await register(session_factory, tenant)
    statuses = [EmailStatus.DELIVERED, EmailStatus.DELIVERY_FAILED, EmailStatus.OPENED, EmailStatus.SENT]
    events = [event(statuses[i % 4], T0 + timedelta(minutes=(i * 7) % 20), f"c{i}") for i in range(20)]
    # when
    await asyncio.gather(*(record(session_factory, email, e) for e in events))
    # then: the stored status is the projection of all 20 events
    stored = await reload(session_factory, email)
    async with session_factory() as session:
        rows = (
            (await session.execute(select(models.EmailEvent).where(models.EmailEvent.email_id == email.id)))
            .scalars()
            .all()
        )
    assert len(rows) == 20
    expected = project(email.sent_at, [fact_of(r) for r in rows])
    assert (stored.status, stored.status_changed_at, stored.open_count) == (
        expected.status,
        expected.status_changed_at,
        expected.opens.count,
    )
