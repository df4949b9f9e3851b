"""DataLoaders keep the SQL statement count of a screen constant in its page size."""

from __future__ import annotations

import re

import pytest
from factories import T0, event, graphql_data, make_tenant, record, register

from gateway.enums import EmailStatus

SCREEN = """
query Screen($first: Int) {
  emails(first: $first) {
    edges { node {
      id subject recipient sentAt emailStatus
      relation { name }
      documents { title }
      invoice { number }
      details { status statusChangedAt failure { category reason } opens { count likelyAutomated }
                history { status occurredAt } }
    } }
  }
}
"""

EVERY_SCREEN = """
query Everything($relationId: ID!) {
  emails(first: 100) { edges { node { subject relation { name } invoice { number } } } }
  documents(first: 100) { edges { node { title emailStatus relation { name } } } }
  invoices(first: 100) { edges { node { number emailStatus relation { name } } } }
  relationTimeline(relationId: $relationId, first: 100) {
    edges { node { ... on EmailInteraction { emailStatus email { subject } } } }
  }
}
"""


@pytest.fixture
async def hundred(session_factory):  # type: ignore[no-untyped-def]
    tenant = await make_tenant(session_factory)
    for n in range(100):
        email = await register(
            session_factory, tenant, n=n, relation=f"r{n % 7}", documents=(f"d{n}", f"shared{n % 3}"), invoice=f"i{n}"
        )
        await record(session_factory, email, event(EmailStatus.DELIVERED, T0), event(EmailStatus.OPENED, T0))
    return tenant


def _tables(statements: list[str]) -> list[str]:
    return [re.search(r"\bFROM (\w+)", s).group(1) for s in statements if s.lstrip().upper().startswith("SELECT")]  # type: ignore[union-attr]


async def _count(schema, make_context, counter, principal, query, **variables):  # type: ignore[no-untyped-def]
    context = make_context(principal)
    with counter:
        before = counter.count
        data = graphql_data(await schema.execute(query, variable_values=variables, context_value=context))
        return data, counter.statements[before:]


async def test_emails_screen_costs_the_same_for_1_row_as_for_100(schema, make_context, count_statements, hundred):  # type: ignore[no-untyped-def]
    # when
    one, one_sql = await _count(schema, make_context, count_statements, hundred.principal, SCREEN, first=1)
    many, many_sql = await _count(schema, make_context, count_statements, hundred.principal, SCREEN, first=100)
    # then
    assert len(one["emails"]["edges"]) == 1 and len(many["emails"]["edges"]) == 100
    assert all(len(e["node"]["documents"]) == 2 for e in many["emails"]["edges"])
    assert len(one_sql) == len(many_sql) == 5, _tables(many_sql)
    # emails page, then one batch each: relations, documents, invoices, histories
    assert sorted(_tables(many_sql)) == sorted(["email", "relation", "email_document", "invoice", "email_event"])


async def test_one_request_over_every_screen_batches_each_kind_of_lookup(
    schema, make_context, count_statements, hundred
):  # type: ignore[no-untyped-def]
    # given
    first = graphql_data(
        await schema.execute(
            "{ emails(first: 1) { edges { node { relation { id } } } } }", context_value=make_context(hundred.principal)
        )
    )
    relation_id = first["emails"]["edges"][0]["node"]["relation"]["id"]
    # when
    data, sql = await _count(
        schema, make_context, count_statements, hundred.principal, EVERY_SCREEN, relationId=relation_id
    )
    # then: every screen answered...
    assert len(data["emails"]["edges"]) == 100
    assert len(data["documents"]["edges"]) == 100
    assert len(data["invoices"]["edges"]) == 100
    assert data["relationTimeline"]["edges"]
    # ...and each kind of lookup went out once, whichever screen asked for it
    tables = _tables(sql)
    assert tables.count("relation") == 1, tables
    assert tables.count("invoice") == 2, tables  # the Invoicing page, and the e-mails' invoices
    assert tables.count("email") == 3, tables  # the E-mails page, the latest e-mails of items, the timeline
    assert len(sql) == 7, tables
