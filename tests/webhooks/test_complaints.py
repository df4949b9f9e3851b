"""A spam complaint proves delivery: recorded and shown, never a delivery failure."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import test_provider_mailgun as mg
import test_provider_resend as rs
from factories import graphql_data, make_tenant, register, reload
from test_webhook_routes import POSTMARK, hooks, now, post_sendgrid, sendgrid_event  # noqa: F401  (hooks: fixture)

from gateway.enums import EmailStatus, FailureCategory
from gateway.ids import encode_id

COMPLAINED = """
query Complained($filter: EmailFilter) {
  emails(first: 10, filter: $filter) {
    edges { node { id emailStatus details {
      status failure { category }
      complaint { complainedAt addressSuppressed notice }
      history { status failureCategory }
    } } }
  }
}
"""


async def test_a_complaint_after_delivery_and_open_keeps_opened_and_shows_the_complaint(
    hooks,
    session_factory,
    schema,
    make_context,  # type: ignore[no-untyped-def]
):
    # given: an e-mail delivered and opened, and another one never complained about
    tenant = await make_tenant(session_factory)
    email, other = await register(session_factory, tenant), await register(session_factory, tenant)
    ref = encode_id("Email", email.id)
    t = now() - timedelta(minutes=10)
    # when: the recipient reports it as spam
    response = await post_sendgrid(
        hooks,
        [
            sendgrid_event("delivered", "c-1", t, gateway_email_id=ref),
            sendgrid_event("open", "c-2", t + timedelta(minutes=1), gateway_email_id=ref),
            sendgrid_event("spamreport", "c-3", t + timedelta(minutes=5), gateway_email_id=ref),
        ],
    )
    assert response.status_code == 200, response.text
    context = make_context(tenant.principal)
    found = graphql_data(
        await schema.execute(COMPLAINED, variable_values={"filter": {"complained": True}}, context_value=context)
    )
    others = graphql_data(
        await schema.execute(COMPLAINED, variable_values={"filter": {"complained": False}}, context_value=context)
    )
    # then: still OPENED, the complaint in the details and the history, and the filter finds it
    (edge,) = found["emails"]["edges"]
    assert edge["node"]["id"] == ref and edge["node"]["emailStatus"] == "OPENED"
    details = edge["node"]["details"]
    assert details["failure"] is None
    assert details["complaint"]["complainedAt"] == (t + timedelta(minutes=5)).isoformat()
    assert details["complaint"]["addressSuppressed"] is True and "spam" in details["complaint"]["notice"]
    assert details["history"][-1] == {"status": "DELIVERED", "failureCategory": "SPAM_COMPLAINT"}
    assert [e["node"]["id"] for e in others["emails"]["edges"]] == [encode_id("Email", other.id)]
    assert others["emails"]["edges"][0]["node"]["details"]["complaint"] is None


def _complaint_bodies(ref: str, message_id: str) -> dict[str, tuple[str, bytes, dict[str, str]]]:
    at = now()
    stamp = at.isoformat().replace("+00:00", "Z")
    mailgun = mg.event_data("complained", timestamp=at.timestamp(), **{"user-variables": {"gateway_email_id": ref}})
    resend = rs.event("email.complained", email_id=message_id, tags={"gateway_email_id": ref})
    resend["created_at"] = stamp
    resend_body = json.dumps(resend).encode()
    postmark = {
        "RecordType": "SpamComplaint",
        "MessageStream": "outbound",
        "ID": 42,
        "Type": "SpamComplaint",
        "TypeCode": 512,
        "Name": "Spam complaint",
        "Tag": "",
        "MessageID": message_id,
        "Metadata": {"gateway_email_id": ref},
        "ServerID": 23,
        "Description": "The subscriber explicitly marked this message as spam.",
        "Details": "",
        "Email": "client@example.com",
        "From": "office@example.com",
        "BouncedAt": stamp,
        "DumpAvailable": False,
        "Inactive": True,
        "CanActivate": False,
        "Subject": "Invoice",
    }
    return {
        "mailgun": ("/webhooks/mailgun", mg.signed(mailgun, at=at, token="c" * 50), {}),
        "resend": ("/webhooks/resend", resend_body, rs.sign(resend_body, at=at)),
        "postmark": ("/webhooks/postmark", json.dumps(postmark).encode(), {"content-type": "application/json"}),
    }


@pytest.mark.parametrize("provider", ["mailgun", "resend", "postmark"])
async def test_a_complaint_with_no_delivery_yet_proves_delivery(hooks, session_factory, provider):  # type: ignore[no-untyped-def]
    # given: an e-mail with no event yet
    tenant = await make_tenant(session_factory)
    email = await register(session_factory, tenant)
    path, body, headers = _complaint_bodies(encode_id("Email", email.id), "4ef9a417-02e9-4d39-ad75-9611e0fcc33c")[
        provider
    ]
    # when
    auth = POSTMARK if provider == "postmark" else None
    response = await hooks.post(path, content=body, headers=headers, auth=auth)
    # then: at least DELIVERED, never DELIVERY_FAILED
    assert response.status_code == 200, response.text
    assert response.json()["applied"] == 1
    row = await reload(session_factory, email)
    assert row.status is EmailStatus.DELIVERED and row.complained_at is not None
    assert row.failure_category is None
    assert row.delivered_at == row.complained_at


async def test_a_recorded_complaint_through_the_mutation_is_a_delivery(session_factory):  # type: ignore[no-untyped-def]
    # given: a custom source reports a complaint the old way, as a failure
    from factories import event, record

    tenant = await make_tenant(session_factory)
    email = await register(session_factory, tenant)
    # when
    await record(
        session_factory, email, event(EmailStatus.DELIVERY_FAILED, now(), category=FailureCategory.SPAM_COMPLAINT)
    )
    # then
    row = await reload(session_factory, email)
    assert row.status is EmailStatus.DELIVERED and row.complained_at is not None
