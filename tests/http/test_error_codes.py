"""Every error that is not a bug carries `extensions.code`, so clients branch on codes, not wording."""

from __future__ import annotations

import pytest
from factories import make_tenant

from gateway.ids import encode_id

EMAILS = "query Emails($first: Int) { emails(first: $first) { totalCount } }"


@pytest.mark.parametrize(
    ("query", "variables", "code"),
    [
        ("query { emails(first: ", {}, "GRAPHQL_PARSE_FAILED"),
        ("query { emails { nope } }", {}, "GRAPHQL_VALIDATION_FAILED"),
        ("query { node { id } }", {}, "GRAPHQL_VALIDATION_FAILED"),
        (EMAILS, {"first": "ten"}, "BAD_USER_INPUT"),
        (EMAILS, {"first": 1000}, "BAD_USER_INPUT"),
    ],
)
async def test_request_errors_carry_a_code(client, session_factory, query, variables, code):  # type: ignore[no-untyped-def]
    # given
    tenant = await make_tenant(session_factory)
    # when
    answer = await client.post("/graphql", json={"query": query, "variables": variables}, headers=tenant.auth)
    # then
    errors = answer.json()["errors"]
    assert [e["extensions"]["code"] for e in errors] == [code] * len(errors)


async def test_a_body_over_the_limit_is_413_with_a_code(client, session_factory):  # type: ignore[no-untyped-def]
    tenant = await make_tenant(session_factory)
    documents = [{"externalId": f"d{i}", "title": "t" * 30} for i in range(40_000)]
    answer = await client.post("/graphql", json={"query": EMAILS, "variables": {"d": documents}}, headers=tenant.auth)
    assert answer.status_code == 413
    assert answer.json()["errors"][0]["extensions"]["code"] == "REQUEST_TOO_LARGE"


@pytest.mark.parametrize("pk", [2**31, 2**53 + 1])
async def test_an_id_past_the_id_columns_is_bad_input_on_every_database(client, session_factory, pk):  # type: ignore[no-untyped-def]
    # (on PostgreSQL it reached the driver: "value out of int32 range", then "Unexpected error.")
    tenant = await make_tenant(session_factory)
    query = "query Node($id: ID!) { node(id: $id) { id } }"
    answer = await client.post(
        "/graphql", json={"query": query, "variables": {"id": encode_id("Email", pk)}}, headers=tenant.auth
    )
    assert [e["extensions"]["code"] for e in answer.json()["errors"]] == ["BAD_USER_INPUT"]
