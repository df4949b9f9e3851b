"""What Relay clients need: backward pagination on every connection and `nodes(ids)`."""

from __future__ import annotations

from datetime import timedelta

import pytest
from factories import T0, graphql_data, graphql_error, make_tenant, register

from gateway.ids import encode_id

EMAILS = """
query Emails($first: Int, $after: String, $last: Int, $before: String) {
  emails(first: $first, after: $after, last: $last, before: $before) {
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { subject } }
  }
}
"""

DOCUMENTS = """
query Documents($last: Int, $before: String) {
  documents(last: $last, before: $before) {
    pageInfo { hasNextPage hasPreviousPage startCursor }
    edges { node { title emails(last: 1) { pageInfo { hasPreviousPage } edges { node { subject } } } } }
  }
}
"""

TIMELINE = """
query Timeline($relationId: ID!, $last: Int, $before: String) {
  relationTimeline(relationId: $relationId, last: $last, before: $before) {
    pageInfo { hasNextPage hasPreviousPage startCursor }
    edges { node { ... on EmailInteraction { email { subject } } } }
  }
}
"""

NODES = """
query Nodes($ids: [ID!]!) {
  nodes(ids: $ids) { __typename id ... on Relation { name } ... on Email { subject } }
}
"""


async def run(schema, make_context, principal, query, **variables):  # type: ignore[no-untyped-def]
    return await schema.execute(query, variable_values=variables, context_value=make_context(principal))


def subjects(connection: dict) -> list[str]:  # type: ignore[type-arg]
    return [edge["node"]["subject"] for edge in connection["edges"]]


async def test_last_and_before_walk_every_email_backwards_newest_first_within_each_page(
    schema, make_context, session_factory
):  # type: ignore[no-untyped-def]
    # given: 11 e-mails, some sent at the same instant (ties break on id)
    tenant = await make_tenant(session_factory)
    for n in range(11):
        await register(session_factory, tenant, n=n, sent_at=T0 + timedelta(minutes=n // 2))
    forwards = subjects(graphql_data(await run(schema, make_context, tenant.principal, EMAILS, first=20))["emails"])
    # when: pages of 4 from the end, each before the previous page's start
    pages, before = [], None
    while True:
        connection = graphql_data(await run(schema, make_context, tenant.principal, EMAILS, last=4, before=before))[
            "emails"
        ]
        pages.append(subjects(connection))
        assert connection["pageInfo"]["hasNextPage"] is (before is not None)
        if not connection["pageInfo"]["hasPreviousPage"]:
            break
        before = connection["pageInfo"]["startCursor"]
    # then: the pages, read from the top, are the forward listing
    assert [len(p) for p in pages] == [4, 4, 3]
    assert [s for page in reversed(pages) for s in page] == forwards


async def test_after_and_before_bound_a_page_from_both_sides(schema, make_context, session_factory):  # type: ignore[no-untyped-def]
    # given
    tenant = await make_tenant(session_factory)
    for n in range(6):
        await register(session_factory, tenant, n=n, sent_at=T0 + timedelta(minutes=n))
    edges = graphql_data(await run(schema, make_context, tenant.principal, EMAILS, first=6))["emails"]["edges"]
    # when
    between = graphql_data(
        await run(
            schema,
            make_context,
            tenant.principal,
            EMAILS,
            first=10,
            after=edges[0]["cursor"],
            before=edges[4]["cursor"],
        )
    )["emails"]
    last_between = graphql_data(
        await run(
            schema, make_context, tenant.principal, EMAILS, last=2, after=edges[0]["cursor"], before=edges[4]["cursor"]
        )
    )["emails"]
    # then
    assert subjects(between) == ["Subject 4", "Subject 3", "Subject 2"]
    assert subjects(last_between) == ["Subject 3", "Subject 2"]
    assert last_between["pageInfo"]["hasPreviousPage"] is True


async def test_backward_pages_on_items_nested_connections_and_timelines(schema, make_context, session_factory):  # type: ignore[no-untyped-def]
    # given: three documents, the first carried by two e-mails
    tenant = await make_tenant(session_factory)
    first = await register(session_factory, tenant, n=1, relation="r1", documents=("d1",))
    await register(session_factory, tenant, n=2, relation="r1", documents=("d1", "d2"))
    await register(session_factory, tenant, n=3, relation="r1", documents=("d3",))
    # when
    oldest = graphql_data(await run(schema, make_context, tenant.principal, DOCUMENTS, last=2))["documents"]
    before = graphql_data(
        await run(schema, make_context, tenant.principal, DOCUMENTS, last=2, before=oldest["pageInfo"]["startCursor"])
    )["documents"]
    relation = encode_id("Relation", first.relation_id)  # type: ignore[arg-type]
    last_interaction = graphql_data(
        await run(schema, make_context, tenant.principal, TIMELINE, relationId=relation, last=1)
    )
    # then: newest first within the page; the nested connection pages backwards too
    assert [e["node"]["title"] for e in oldest["edges"]] == ["Document d2", "Document d1"]
    assert oldest["pageInfo"] == {
        "hasNextPage": False,
        "hasPreviousPage": True,
        "startCursor": oldest["pageInfo"]["startCursor"],
    }
    d1 = oldest["edges"][1]["node"]["emails"]
    assert subjects(d1) == ["Subject 1"] and d1["pageInfo"]["hasPreviousPage"] is True
    assert [e["node"]["title"] for e in before["edges"]] == ["Document d3"]
    assert before["pageInfo"]["hasNextPage"] is True and before["pageInfo"]["hasPreviousPage"] is False
    assert [e["node"]["email"]["subject"] for e in last_interaction["relationTimeline"]["edges"]] == ["Subject 1"]


async def test_first_and_last_together_and_a_last_over_the_maximum_are_refused(schema, make_context, session_factory):  # type: ignore[no-untyped-def]
    # given
    tenant = await make_tenant(session_factory)
    # when
    both = await run(schema, make_context, tenant.principal, EMAILS, first=2, last=2)
    too_many = await run(schema, make_context, tenant.principal, EMAILS, last=101)
    # then
    assert graphql_error(both) == (
        "`first` and `last` cannot be used together: page forwards or backwards",
        "BAD_USER_INPUT",
    )
    assert graphql_error(too_many) == ("`last` must be between 0 and 100, got 101", "BAD_USER_INPUT")


async def test_nodes_answer_in_order_with_null_for_missing_and_foreign_ids(schema, make_context, session_factory):  # type: ignore[no-untyped-def]
    # given: an e-mail of ours and one of another tenant
    ours, theirs = await make_tenant(session_factory), await make_tenant(session_factory)
    mine = await register(session_factory, ours, n=1, relation="r1")
    foreign = await register(session_factory, theirs, n=2)
    email_id = encode_id("Email", mine.id)  # type: ignore[arg-type]
    ids = [
        encode_id("Relation", mine.relation_id),  # type: ignore[arg-type]
        encode_id("Email", foreign.id),  # type: ignore[arg-type]
        email_id,
        encode_id("Email", 999_999),
        email_id,
    ]
    # when
    data = graphql_data(await run(schema, make_context, ours.principal, NODES, ids=ids))
    # then: duplicates keep their positions; foreign and missing read alike
    assert data["nodes"] == [
        {"__typename": "Relation", "id": ids[0], "name": "Relation r1"},
        None,
        {"__typename": "Email", "id": email_id, "subject": "Subject 1"},
        None,
        {"__typename": "Email", "id": email_id, "subject": "Subject 1"},
    ]


async def test_nodes_refuses_more_ids_than_the_list_limit_and_bad_ids(schema, make_context, session_factory):  # type: ignore[no-untyped-def]
    # given
    tenant = await make_tenant(session_factory)
    many = [encode_id("Email", 1)] * 101
    # when
    too_many = await run(schema, make_context, tenant.principal, NODES, ids=many)
    literal = await run(
        schema, make_context, tenant.principal, "{ nodes(ids: [" + ", ".join(f'"{i}"' for i in many) + "]) { id } }"
    )
    garbage = await run(schema, make_context, tenant.principal, NODES, ids=[encode_id("Email", 1), "nope"])
    # then
    assert graphql_error(too_many) == (
        "Variable \"$ids\" at 'ids' has 101 entries; at most 100 are accepted",
        "BAD_USER_INPUT",
    )
    assert graphql_error(literal) == (
        'Argument "ids" of field "nodes" at \'ids\' has 101 entries; at most 100 are accepted',
        "BAD_USER_INPUT",
    )
    assert graphql_error(garbage) == ("Invalid ID 'nope'", "BAD_USER_INPUT")


def test_the_fast_path_leaves_backward_pages_to_the_reference_executor(settings):  # type: ignore[no-untyped-def]
    # given
    from gateway.fastpath.fields import Unsupported
    from gateway.fastpath.plans import compile_plan
    from gateway.schema import build_schema

    graphql_schema = build_schema(settings)._schema
    # when
    forward = compile_plan(
        graphql_schema, "query($after: String) { emails(first: 5, after: $after) { edges { cursor } } }", None
    )
    with pytest.raises(Unsupported, match="backward pagination"):
        compile_plan(graphql_schema, EMAILS, None)
    # then: its compiled pages only go forwards
    assert forward is not None


def test_date_time_says_which_specification_it_follows():
    # given / when
    from gateway.schema import sdl

    # then
    assert 'scalar DateTime @specifiedBy(url: "https://scalars.graphql.org/andimarek/date-time")' in sdl()
