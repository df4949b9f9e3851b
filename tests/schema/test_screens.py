"""The four screens, the details, node lookups and the counts, through the schema."""

from __future__ import annotations

from datetime import timedelta

import pytest
from factories import T0, event, graphql_data, graphql_error, make_tenant, record, register

from gateway.enums import EmailStatus

S, D, F, O = EmailStatus.SENT, EmailStatus.DELIVERED, EmailStatus.DELIVERY_FAILED, EmailStatus.OPENED

EMAILS = """
query Emails($filter: EmailFilter, $first: Int, $after: String) {
  emails(filter: $filter, first: $first, after: $after) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node {
      id externalId subject recipient sentAt emailStatus
      relation { id name externalId }
      documents { id title }
      invoice { id number invoiceStatus }
      details { emailId status statusChangedAt deliveredAt
        failure { category reason smtpCode occurredAt }
        opens { count likelyAutomated notice firstOpenedAt lastOpenedAt }
        history { status source occurredAt description }
        historyAvailableUntil historyExpired }
    } }
  }
}
"""

DOCUMENTS = """
query Documents($filter: DocumentFilter, $first: Int, $after: String) {
  documents(filter: $filter, first: $first, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { node { id externalId title emailStatus relation { name }
      details { status subject }
      emails(first: 10) { totalCount edges { node { id subject } } } } }
  }
}
"""

INVOICES = """
query Invoices($filter: InvoiceFilter) {
  invoices(filter: $filter) {
    totalCount
    edges { node { id number invoiceStatus emailStatus details { status } emails { totalCount } } }
  }
}
"""

TIMELINE = """
query Timeline($relationId: ID!, $first: Int, $after: String) {
  relationTimeline(relationId: $relationId, first: $first, after: $after) {
    relation { id name }
    pageInfo { hasNextPage endCursor }
    edges { cursor node { __typename ... on EmailInteraction { id occurredAt emailStatus email { subject } details { status } } } }
  }
}
"""

NODE = """
query Node($id: ID!) {
  node(id: $id) {
    __typename id
    ... on EmailTracked { emailStatus details { status } }
    ... on Relation { name }
  }
}
"""

STATS = """
query Stats($filter: EmailStatsFilter) { emailStats(filter: $filter) { total byStatus { status count } } }
"""


@pytest.fixture
async def office(session_factory):  # type: ignore[no-untyped-def]
    """A tenant whose e-mails cover every status, with relations, documents and invoices."""
    tenant = await make_tenant(session_factory)
    sent = await register(session_factory, tenant, n=1, relation="r1", documents=("d1",))
    delivered = await register(session_factory, tenant, n=2, relation="r1", invoice="i1", subject="Invoice 2026-1")
    failed = await register(
        session_factory, tenant, n=3, relation="r2", documents=("d1", "d2"), recipient="nobody@nowhere.test"
    )
    opened = await register(session_factory, tenant, n=4, relation="r2", invoice="i2")
    await record(session_factory, delivered, event(D, T0 + timedelta(minutes=3)))
    await record(session_factory, failed, event(F, T0 + timedelta(minutes=4)))
    await record(
        session_factory,
        opened,
        event(D, T0 + timedelta(minutes=5)),
        event(O, T0 + timedelta(minutes=6), machine_open=True),
    )
    return tenant, {"sent": sent, "delivered": delivered, "failed": failed, "opened": opened}


async def run(schema, make_context, principal, query, **variables):  # type: ignore[no-untyped-def]
    return await schema.execute(query, variable_values=variables, context_value=make_context(principal))


async def test_emails_screen_lists_newest_first_with_everything_a_line_shows(schema, make_context, office):  # type: ignore[no-untyped-def]
    # given
    tenant, emails = office
    # when
    data = graphql_data(await run(schema, make_context, tenant.principal, EMAILS))
    # then
    nodes = [e["node"] for e in data["emails"]["edges"]]
    assert [n["externalId"] for n in nodes] == [f"ext-{tenant.id}-{i}" for i in (4, 3, 2, 1)]
    assert [n["emailStatus"] for n in nodes] == ["OPENED", "DELIVERY_FAILED", "DELIVERED", "SENT"]
    assert data["emails"]["totalCount"] == 4
    opened, failed, delivered, sent = nodes
    assert opened["details"]["opens"]["count"] == 1
    assert opened["details"]["opens"]["likelyAutomated"] is True
    assert "not proof" in opened["details"]["opens"]["notice"]
    assert opened["invoice"]["number"] == "INV-i2"
    assert failed["details"]["failure"] == {
        "category": "HARD_BOUNCE",
        "reason": "550 5.1.1 no such user",
        "smtpCode": 550,
        "occurredAt": (T0 + timedelta(minutes=4)).isoformat(),
    }
    assert sorted(d["title"] for d in failed["documents"]) == ["Document d1", "Document d2"]
    assert delivered["details"]["deliveredAt"] == (T0 + timedelta(minutes=3)).isoformat()
    assert [h["status"] for h in opened["details"]["history"]] == ["DELIVERED", "OPENED"]
    assert sent["details"]["history"] == [] and sent["details"]["failure"] is None
    assert sent["relation"]["name"] == "Relation r1"
    assert sent["details"]["historyAvailableUntil"] == (emails["sent"].sent_at + timedelta(days=30)).isoformat()


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [(["DELIVERY_FAILED"], [3]), (["SENT", "OPENED"], [4, 1]), ([], [])],
)
async def test_emails_screen_filters_by_status(schema, make_context, office, statuses, expected):  # type: ignore[no-untyped-def]
    tenant, _ = office
    data = graphql_data(await run(schema, make_context, tenant.principal, EMAILS, filter={"statuses": statuses}))
    assert [e["node"]["externalId"] for e in data["emails"]["edges"]] == [f"ext-{tenant.id}-{n}" for n in expected]
    assert data["emails"]["totalCount"] == len(expected)


async def test_emails_screen_filters_by_relation_time_and_search(schema, make_context, office):  # type: ignore[no-untyped-def]
    tenant, emails = office
    relation_id = graphql_data(await run(schema, make_context, tenant.principal, EMAILS))["emails"]["edges"][0]["node"][
        "relation"
    ]["id"]
    by_relation = graphql_data(
        await run(schema, make_context, tenant.principal, EMAILS, filter={"relationId": relation_id})
    )
    assert [e["node"]["externalId"][-1] for e in by_relation["emails"]["edges"]] == ["4", "3"]
    window = {
        "sentAfter": (T0 + timedelta(minutes=2)).isoformat(),
        "sentBefore": (T0 + timedelta(minutes=4)).isoformat(),
    }
    by_time = graphql_data(await run(schema, make_context, tenant.principal, EMAILS, filter=window))
    assert [e["node"]["externalId"][-1] for e in by_time["emails"]["edges"]] == ["3", "2"]
    by_subject = graphql_data(
        await run(schema, make_context, tenant.principal, EMAILS, filter={"search": "invoice 2026"})
    )
    assert [e["node"]["externalId"][-1] for e in by_subject["emails"]["edges"]] == ["2"]
    by_recipient = graphql_data(await run(schema, make_context, tenant.principal, EMAILS, filter={"search": "NOWHERE"}))
    assert [e["node"]["externalId"][-1] for e in by_recipient["emails"]["edges"]] == ["3"]
    wildcard = graphql_data(await run(schema, make_context, tenant.principal, EMAILS, filter={"search": "%"}))
    assert wildcard["emails"]["edges"] == []


async def test_pages_walk_every_email_once(schema, make_context, session_factory):  # type: ignore[no-untyped-def]
    # given: 23 e-mails, some sent at the same instant (ties break on id)
    tenant = await make_tenant(session_factory)
    for n in range(23):
        await register(session_factory, tenant, n=n, sent_at=T0 + timedelta(minutes=n // 3))
    # when: pages of 5
    seen, after, pages = [], None, 0
    while True:
        data = graphql_data(await run(schema, make_context, tenant.principal, EMAILS, first=5, after=after))
        connection = data["emails"]
        seen += [e["node"]["id"] for e in connection["edges"]]
        pages += 1
        assert connection["pageInfo"]["hasPreviousPage"] is (after is not None)
        if not connection["pageInfo"]["hasNextPage"]:
            break
        after = connection["pageInfo"]["endCursor"]
    # then
    assert pages == 5
    assert len(seen) == len(set(seen)) == 23


async def test_documents_screen_shows_the_latest_emails_status(schema, make_context, office):  # type: ignore[no-untyped-def]
    tenant, _ = office
    data = graphql_data(await run(schema, make_context, tenant.principal, DOCUMENTS))
    nodes = {n["node"]["externalId"]: n["node"] for n in data["documents"]["edges"]}
    # d1 went out with e-mail 1 (sent) and then e-mail 3 (failed): the latest counts
    assert nodes["d1"]["emailStatus"] == "DELIVERY_FAILED"
    assert nodes["d1"]["details"]["status"] == "DELIVERY_FAILED"
    assert nodes["d1"]["emails"]["totalCount"] == 2
    assert [e["node"]["subject"] for e in nodes["d1"]["emails"]["edges"]] == ["Subject 3", "Subject 1"]
    assert nodes["d2"]["relation"]["name"] == "Relation r2"
    failed_only = graphql_data(
        await run(schema, make_context, tenant.principal, DOCUMENTS, filter={"emailStatuses": ["SENT"]})
    )
    assert failed_only["documents"]["edges"] == [] and failed_only["documents"]["totalCount"] == 0


async def test_invoicing_screen_filters_on_both_statuses(schema, make_context, office):  # type: ignore[no-untyped-def]
    tenant, _ = office
    data = graphql_data(await run(schema, make_context, tenant.principal, INVOICES))
    assert [(n["node"]["number"], n["node"]["emailStatus"]) for n in data["invoices"]["edges"]] == [
        ("INV-i2", "OPENED"),
        ("INV-i1", "DELIVERED"),
    ]
    opened = graphql_data(
        await run(
            schema,
            make_context,
            tenant.principal,
            INVOICES,
            filter={"emailStatuses": ["OPENED"], "invoiceStatuses": ["ISSUED"]},
        )
    )
    assert [n["node"]["number"] for n in opened["invoices"]["edges"]] == ["INV-i2"]
    paid = graphql_data(
        await run(schema, make_context, tenant.principal, INVOICES, filter={"invoiceStatuses": ["PAID"]})
    )
    assert paid["invoices"]["totalCount"] == 0


async def test_relation_timeline_pages_newest_first(schema, make_context, office):  # type: ignore[no-untyped-def]
    tenant, _ = office
    first_email = graphql_data(await run(schema, make_context, tenant.principal, EMAILS))["emails"]["edges"][-1]["node"]
    relation_id = first_email["relation"]["id"]
    page1 = graphql_data(await run(schema, make_context, tenant.principal, TIMELINE, relationId=relation_id, first=1))
    timeline = page1["relationTimeline"]
    assert timeline["relation"]["name"] == "Relation r1"
    assert [e["node"]["email"]["subject"] for e in timeline["edges"]] == ["Invoice 2026-1"]
    assert timeline["edges"][0]["node"]["__typename"] == "EmailInteraction"
    page2 = graphql_data(
        await run(
            schema,
            make_context,
            tenant.principal,
            TIMELINE,
            relationId=relation_id,
            first=1,
            after=timeline["pageInfo"]["endCursor"],
        )
    )
    assert [e["node"]["emailStatus"] for e in page2["relationTimeline"]["edges"]] == ["SENT"]
    assert page2["relationTimeline"]["pageInfo"]["hasNextPage"] is False


async def test_node_fetches_every_kind_by_global_id(schema, make_context, office):  # type: ignore[no-untyped-def]
    tenant, _ = office
    line = graphql_data(await run(schema, make_context, tenant.principal, EMAILS))["emails"]["edges"][0]["node"]
    ids = {"Email": line["id"], "Relation": line["relation"]["id"], "Invoice": line["invoice"]["id"]}
    for typename, global_id in ids.items():
        data = graphql_data(await run(schema, make_context, tenant.principal, NODE, id=global_id))
        assert data["node"]["__typename"] == typename
        assert data["node"]["id"] == global_id
    invoice = graphql_data(await run(schema, make_context, tenant.principal, NODE, id=ids["Invoice"]))["node"]
    assert invoice["emailStatus"] == "OPENED" and invoice["details"]["status"] == "OPENED"


async def test_stats_count_every_status(schema, make_context, office):  # type: ignore[no-untyped-def]
    tenant, _ = office
    data = graphql_data(await run(schema, make_context, tenant.principal, STATS))
    assert data["emailStats"]["total"] == 4
    assert data["emailStats"]["byStatus"] == [
        {"status": s, "count": 1} for s in ("SENT", "DELIVERED", "DELIVERY_FAILED", "OPENED")
    ]
    later = graphql_data(
        await run(
            schema, make_context, tenant.principal, STATS, filter={"sentAfter": (T0 + timedelta(minutes=3)).isoformat()}
        )
    )
    assert later["emailStats"]["total"] == 2


async def test_a_missing_relation_timeline_is_not_found(schema, make_context, office):  # type: ignore[no-untyped-def]
    from gateway.ids import encode_id

    tenant, _ = office
    result = await run(schema, make_context, tenant.principal, TIMELINE, relationId=encode_id("Relation", 999_999))
    assert graphql_error(result) == (f"Relation {encode_id('Relation', 999_999)!r} not found", "NOT_FOUND")
