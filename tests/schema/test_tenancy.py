"""No query, filter, node id or mutation reaches another tenant; foreign reads like missing."""

from __future__ import annotations

import pytest
from factories import T0, event, graphql_data, graphql_error, make_tenant, record, register

from gateway.enums import EmailStatus
from gateway.ids import encode_id

MISSING = 2**31 - 7


@pytest.fixture
async def two_offices(session_factory):  # type: ignore[no-untyped-def]
    a = await make_tenant(session_factory, "Office A")
    b = await make_tenant(session_factory, "Office B")
    mail_a = await register(session_factory, a, n=1, relation="shared-ext", documents=("doc",), invoice="inv")
    await record(session_factory, mail_a, event(EmailStatus.DELIVERED, T0))
    mail_b = await register(session_factory, b, n=1, relation="shared-ext")
    return a, b, mail_a, mail_b


async def run(schema, make_context, principal, query, **variables):  # type: ignore[no-untyped-def]
    return await schema.execute(query, variable_values=variables, context_value=make_context(principal))


async def _ids_of_a(schema, make_context, a):  # type: ignore[no-untyped-def]
    data = graphql_data(
        await run(
            schema,
            make_context,
            a.principal,
            "{ emails { edges { node { id relation { id } documents { id } invoice { id } } } } }",
        )
    )
    node = data["emails"]["edges"][0]["node"]
    return {
        "Email": node["id"],
        "Relation": node["relation"]["id"],
        "Document": node["documents"][0]["id"],
        "Invoice": node["invoice"]["id"],
    }


async def test_lists_and_counts_show_only_the_callers_tenant(schema, make_context, two_offices):  # type: ignore[no-untyped-def]
    a, b, _, mail_b = two_offices
    query = "{ emails { totalCount edges { node { id } } } documents { totalCount } invoices { totalCount } emailStats { total } }"
    data = graphql_data(await run(schema, make_context, b.principal, query))
    assert data["emails"]["totalCount"] == 1
    assert data["emails"]["edges"][0]["node"]["id"] == encode_id("Email", mail_b.id)
    assert (data["documents"]["totalCount"], data["invoices"]["totalCount"], data["emailStats"]["total"]) == (0, 0, 1)


@pytest.mark.parametrize("kind", ["Email", "Relation", "Document", "Invoice"])
async def test_a_foreign_node_id_reads_exactly_like_a_missing_one(schema, make_context, two_offices, kind):  # type: ignore[no-untyped-def]
    a, b, _, _ = two_offices
    foreign = (await _ids_of_a(schema, make_context, a))[kind]
    query = "query($id: ID!) { node(id: $id) { id } }"
    seen_by_b = await run(schema, make_context, b.principal, query, id=foreign)
    missing = await run(schema, make_context, b.principal, query, id=encode_id(kind, MISSING))
    assert seen_by_b.data == missing.data == {"node": None}
    assert seen_by_b.errors is None and missing.errors is None
    own = graphql_data(await run(schema, make_context, a.principal, query, id=foreign))
    assert own["node"]["id"] == foreign


async def test_a_foreign_email_id_reads_like_a_missing_one(schema, make_context, two_offices):  # type: ignore[no-untyped-def]
    a, b, mail_a, _ = two_offices
    query = "query($id: ID!) { email(id: $id) { id } }"
    assert graphql_data(await run(schema, make_context, b.principal, query, id=encode_id("Email", mail_a.id))) == {
        "email": None
    }
    assert graphql_data(await run(schema, make_context, b.principal, query, id=encode_id("Email", MISSING))) == {
        "email": None
    }


async def test_a_foreign_relation_timeline_fails_like_a_missing_one(schema, make_context, two_offices):  # type: ignore[no-untyped-def]
    a, b, _, _ = two_offices
    relation = (await _ids_of_a(schema, make_context, a))["Relation"]
    query = "query($id: ID!) { relationTimeline(relationId: $id) { edges { cursor } } }"
    foreign = graphql_error(await run(schema, make_context, b.principal, query, id=relation))
    missing = graphql_error(await run(schema, make_context, b.principal, query, id=encode_id("Relation", MISSING)))
    assert foreign[1] == missing[1] == "NOT_FOUND"
    assert foreign[0].replace(relation, "ID") == missing[0].replace(encode_id("Relation", MISSING), "ID")


@pytest.mark.parametrize(
    "query",
    [
        "query($r: ID) { emails(filter: {relationId: $r}) { totalCount edges { node { id } } } }",
        "query($r: ID) { documents(filter: {relationId: $r}) { totalCount } }",
        "query($r: ID) { invoices(filter: {relationId: $r}) { totalCount } }",
        "query($r: ID) { emailStats(filter: {relationId: $r}) { total } }",
    ],
)
async def test_filters_on_a_foreign_relation_find_nothing(schema, make_context, two_offices, query):  # type: ignore[no-untyped-def]
    a, b, _, _ = two_offices
    relation = (await _ids_of_a(schema, make_context, a))["Relation"]
    data = graphql_data(await run(schema, make_context, b.principal, query, r=relation))
    (result,) = data.values()
    assert result.get("totalCount", result.get("total")) == 0


async def test_recording_an_event_on_a_foreign_email_fails_like_a_missing_one(schema, make_context, two_offices):  # type: ignore[no-untyped-def]
    a, b, mail_a, _ = two_offices
    query = """mutation($input: RecordEmailEventInput!) { recordEmailEvent(input: $input) { id } }"""

    def payload(email_id: str) -> dict[str, object]:
        return {"input": {"emailId": email_id, "status": "OPENED", "occurredAt": T0.isoformat(), "eventKey": "x"}}

    foreign_id, missing_id = encode_id("Email", mail_a.id), encode_id("Email", MISSING)
    foreign = graphql_error(
        await schema.execute(query, variable_values=payload(foreign_id), context_value=make_context(b.principal))
    )
    missing = graphql_error(
        await schema.execute(query, variable_values=payload(missing_id), context_value=make_context(b.principal))
    )
    assert foreign[0].replace(foreign_id, "ID") == missing[0].replace(missing_id, "ID")
    assert foreign[1] == missing[1] == "NOT_FOUND"
    status = graphql_data(
        await run(
            schema, make_context, a.principal, "query($id: ID!) { email(id: $id) { emailStatus } }", id=foreign_id
        )
    )
    assert status["email"]["emailStatus"] == "DELIVERED"


async def test_the_same_relation_external_id_in_two_tenants_stays_apart(schema, make_context, two_offices):  # type: ignore[no-untyped-def]
    a, b, mail_a, mail_b = two_offices
    assert mail_a.relation_id != mail_b.relation_id  # "shared-ext" is a different relation in each office
    data = graphql_data(
        await run(
            schema,
            make_context,
            b.principal,
            "{ emails { edges { node { relation { name } details { history { status } } } } } }",
        )
    )
    assert data["emails"]["edges"][0]["node"]["details"]["history"] == []
