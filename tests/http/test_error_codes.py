"""Every error that is not a bug carries `extensions.code`, so clients branch on codes, not wording."""

from __future__ import annotations

import pytest
from factories import make_tenant

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
