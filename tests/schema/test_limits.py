"""Limits that need a request's variables: query cost, NUL characters, list sizes, time."""

from __future__ import annotations

import pytest
from conftest import make_settings
from factories import graphql_data, graphql_error, make_tenant, register
from graphql import OperationDefinitionNode, parse
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import func, select

from gateway import models
from gateway.ids import encode_id
from gateway.schema import build_schema
from gateway.schema.limits import query_cost

# The denial of service found by an attacker with a read-only key: inside every
# limit but the cost, it returned a million objects (33 MB) and held the loop ~15 s.
NESTED = """
query Nested($n: Int) {
  emails(first: $n) { edges { node { invoice { emails(first: $n) { edges { node {
    invoice { emails(first: $n) { edges { node { id } } } } } } } } } } }
}
"""
ALIASED = (
    "query Aliased($n: Int) { "
    + " ".join(
        f"a{i}: documents(first: $n) {{ edges {{ node {{ emails(first: $n) {{ edges {{ node {{ id }} }} }} }} }} }}"
        for i in range(30)
    )
    + " }"
)
EMAILS = (
    "query Emails($f: EmailFilter) { emails(filter: $f, first: 100) { totalCount edges { node { id emailStatus } } } }"
)
REGISTER = """
mutation Register($input: RegisterEmailInput!) { registerEmail(input: $input) { email { id subject } } }
"""
RECORD = """
mutation Record($input: RecordEmailEventInput!) { recordEmailEvent(input: $input) { id emailStatus } }
"""
# What the README and the four screens send, with the largest pages they use.
SCREENS = [
    "{ emails(first: 100) { totalCount pageInfo { hasNextPage endCursor } edges { node { id subject recipient sentAt "
    "emailStatus relation { name } documents { title } invoice { number } details { status failure { reason } "
    "opens { count } history { status occurredAt } } } } } }",
    "{ documents(first: 100) { totalCount edges { node { title emailStatus relation { name } "
    "emails(first: 3) { edges { node { sentAt emailStatus } } } } } } }",
    "{ invoices(first: 100) { edges { node { number invoiceStatus emailStatus details { failure { reason } } } } } }",
    "query($r: ID!) { relationTimeline(relationId: $r, first: 100) { relation { name } edges { node { "
    "... on EmailInteraction { occurredAt emailStatus email { subject } } } } } }",
]


def cost(query: str, variables: dict[str, object] | None = None, max_page_size: int = 100) -> int:
    document = parse(query)
    operation = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
    return query_cost(
        build_schema(make_settings("sqlite://", "data"))._schema,
        document,
        operation,
        variables,
        max_page_size=max_page_size,
    )


def test_nested_connections_multiply_their_page_sizes():
    # given the three nested connections of 100
    # when / then: 100 + 100·100 + 100·100·100 objects, as GitHub's node limit counts them
    assert cost(NESTED, {"n": 100}) == 100 + 100**2 + 100**3
    assert cost(NESTED, {"n": 2}) == 2 + 4 + 8
    # an omitted `first` counts its default (50), a larger one counts the maximum page size
    assert cost(NESTED, {}) == 50 + 50**2 + 50**3
    assert cost(NESTED, {"n": 10**9}) == cost(NESTED, {"n": 100})


BACKWARD = """
query Backward($n: Int) {
  emails(last: $n) { edges { node { invoice { emails(last: $n) { edges { node {
    invoice { emails(first: 2) { edges { node { id } } } } } } } } } } }
}
"""


def test_backward_pages_cost_their_last_as_forward_pages_cost_their_first():
    # given connections paged with `last`, one of them nested in another
    # when / then
    assert cost(BACKWARD, {"n": 100}) == 100 + 100**2 + 2 * 100**2
    assert cost(BACKWARD, {"n": 10**9}) == cost(BACKWARD, {"n": 100})
    # neither given: the default page size; both given (refused when it runs): the larger
    assert cost(BACKWARD, {}) == 50 + 50**2 + 2 * 50**2
    assert cost("{ emails(first: 3, last: 7) { edges { node { id } } } }") == 7


def test_fragments_count_once_per_spread_and_a_deep_chain_is_cheap_to_cost():
    # given fragments that each spread the next one twice: 2^40 connections if expanded
    chain = (
        "".join(
            f"fragment F{i} on Email {{ a: invoice {{ emails(first: 1) {{ edges {{ node {{ ...F{i + 1} }} }} }} }} "
            f"b: invoice {{ emails(first: 1) {{ edges {{ node {{ ...F{i + 1} }} }} }} }} }} "
            for i in range(40)
        )
        + "fragment F40 on Email { id }"
    )
    query = "{ emails(first: 1) { edges { node { ...F0 } } } } " + chain
    # when / then: computed through the memo, not by expanding 2^40 spreads
    assert cost(query) == 1 + sum(2**i for i in range(1, 41))


@given(
    st.integers(min_value=1, max_value=30),
    st.integers(min_value=0, max_value=100),
    st.integers(min_value=0, max_value=100),
)
@hsettings(max_examples=50, deadline=None)
def test_cost_is_additive_over_aliases_and_multiplicative_along_nesting(aliases, outer, inner):
    # given k aliased copies of one nested selection
    one = f"a0: documents(first: {outer}) {{ edges {{ node {{ emails(first: {inner}) {{ edges {{ node {{ id }} }} }} }} }} }}"
    many = " ".join(one.replace("a0:", f"a{i}:") for i in range(aliases))
    # when / then
    assert cost("{ " + one + " }") == outer + outer * inner
    assert cost("{ " + many + " }") == aliases * (outer + outer * inner)


def test_the_screens_pass_with_room_to_spare():
    limit = make_settings("sqlite://", "data").max_query_cost
    for query in SCREENS:
        assert cost(query, {"r": "x"}) * 10 <= limit, query


async def test_a_costly_query_is_refused_before_it_runs(schema, make_context, session_factory):
    # given 3 e-mails sharing an invoice (the attack needs no more to be refused)
    tenant = await make_tenant(session_factory)
    for _ in range(3):
        await register(session_factory, tenant, invoice="inv-1")
    context = make_context(tenant.read_principal)
    # when
    nested = await schema.execute(NESTED, variable_values={"n": 100}, context_value=context)
    aliased = await schema.execute(ALIASED, variable_values={"n": 100}, context_value=context)
    small = await schema.execute(NESTED, variable_values={"n": 5}, context_value=context)
    # then: the cost and the limit are in the message; a small page of the same query runs
    assert graphql_error(nested) == (
        "query cost 1010100 exceeds the limit of 10000: the page sizes (`first`) of nested connections multiply; "
        "ask for smaller pages or fewer nested connections",
        "BAD_USER_INPUT",
    )
    assert nested.data is None
    assert "query cost 303000 exceeds the limit of 10000" in graphql_error(aliased)[0]
    assert len(graphql_data(small)["emails"]["edges"]) == 3


@pytest.mark.parametrize(
    ("query", "variables", "message"),
    [
        (
            EMAILS,
            {"f": {"search": "x\u0000y"}},
            "Variable \"$f\" at 'f.search' contains a NUL character (U+0000), which cannot be stored",
        ),
        (
            '{ emails(filter: {search: "x\\u0000y"}) { totalCount } }',
            None,
            'Argument "filter" of field "emails" at \'filter.search\' contains a NUL character (U+0000), which cannot be stored',
        ),
        (
            REGISTER,
            {"input": {"externalId": "e-1", "subject": "Invoice\u0000", "recipient": "a@example.com"}},
            "Variable \"$input\" at 'input.subject' contains a NUL character (U+0000), which cannot be stored",
        ),
        (
            REGISTER,
            {
                "input": {
                    "externalId": "e-1",
                    "subject": "s",
                    "recipient": "a@example.com",
                    "documents": [{"externalId": "d\u0000", "title": "t"}],
                }
            },
            "Variable \"$input\" at 'input.documents[0].externalId' contains a NUL character (U+0000), which cannot be stored",
        ),
    ],
)
async def test_a_nul_character_in_input_is_refused_naming_the_field(
    schema, make_context, session_factory, query, variables, message
):
    # given
    tenant = await make_tenant(session_factory)
    # when
    result = await schema.execute(query, variable_values=variables, context_value=make_context(tenant.principal))
    # then: a client error that says where, and nothing written
    assert graphql_error(result) == (message, "BAD_USER_INPUT")
    async with session_factory() as session:
        assert (await session.execute(select(func.count()).select_from(models.Email))).scalar_one() == 0


async def test_a_nul_character_in_an_event_description_is_refused(schema, make_context, session_factory):
    # given
    tenant = await make_tenant(session_factory)
    email = await register(session_factory, tenant)
    event = {
        "emailId": encode_id("Email", email.id),
        "eventKey": "k1",
        "status": "DELIVERED",
        "occurredAt": "2026-01-01T10:00:00Z",
        "description": "ok\u0000",
    }
    # when
    result = await schema.execute(
        RECORD, variable_values={"input": event}, context_value=make_context(tenant.principal)
    )
    # then
    assert graphql_error(result) == (
        "Variable \"$input\" at 'input.description' contains a NUL character (U+0000), which cannot be stored",
        "BAD_USER_INPUT",
    )
    async with session_factory() as session:
        assert (await session.execute(select(func.count()).select_from(models.EmailEvent))).scalar_one() == 0


async def test_duplicate_list_entries_are_folded_and_too_many_distinct_ones_refused(
    schema, make_context, session_factory
):
    # given one e-mail, and a filter with the same status 40,000 times
    tenant = await make_tenant(session_factory)
    await register(session_factory, tenant)
    context = make_context(tenant.principal)
    # when
    folded = await schema.execute(EMAILS, variable_values={"f": {"statuses": ["SENT"] * 40_000}}, context_value=context)
    too_many = await schema.execute(
        REGISTER,
        variable_values={
            "input": {
                "externalId": "e-2",
                "subject": "s",
                "recipient": "a@example.com",
                "documents": [{"externalId": f"d{i}", "title": "t"} for i in range(101)],
            }
        },
        context_value=context,
    )
    literal = await schema.execute(
        'mutation { registerEmail(input: {externalId: "e-3", subject: "s", recipient: "a@example.com", documents: ['
        + ", ".join(f'{{externalId: "d{i}", title: "t"}}' for i in range(101))
        + "]}) { email { id } } }",
        context_value=context,
    )
    # then
    assert graphql_data(folded)["emails"]["totalCount"] == 1
    assert graphql_error(too_many) == (
        "Variable \"$input\" at 'input.documents' has 101 distinct entries; at most 100 are accepted",
        "BAD_USER_INPUT",
    )
    assert graphql_error(literal) == (
        'Argument "input" of field "registerEmail" at \'input.documents\' has 101 distinct entries; at most 100 are accepted',
        "BAD_USER_INPUT",
    )
    async with session_factory() as session:
        assert (await session.execute(select(func.count()).select_from(models.Email))).scalar_one() == 1


async def test_a_query_over_its_time_budget_is_stopped_and_the_next_one_runs(settings, make_context, session_factory):
    # given a budget no database round trip fits in
    tenant = await make_tenant(session_factory)
    await register(session_factory, tenant)
    tight = build_schema(settings.model_copy(update={"max_execution_seconds": 1e-9}))
    # when
    stopped = await tight.execute(EMAILS, context_value=make_context(tenant.principal))
    mutation = await tight.execute(
        REGISTER,
        variable_values={"input": {"externalId": "e-9", "subject": "s", "recipient": "a@example.com"}},
        context_value=make_context(tenant.principal),
    )
    after = await build_schema(settings).execute(EMAILS, context_value=make_context(tenant.principal))
    # then: the query is stopped with a clear error; a mutation is never cut short
    message, code = graphql_error(stopped)
    assert code == "EXECUTION_TIMEOUT"
    assert message == "the query ran longer than its budget of 1e-09 s and was stopped"
    assert graphql_data(mutation)["registerEmail"]["email"]["subject"] == "s"
    assert graphql_data(after)["emails"]["totalCount"] == 2
