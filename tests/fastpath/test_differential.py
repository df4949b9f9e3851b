"""The fast path answers exactly as strawberry does: differential tests over generated queries.

Two apps on the same data: one with the fast path, one without (the reference).
Each generated request goes twice to the first (the first answer teaches it the
plan, the second comes from the plan where one applies) and once to the
reference; the answers must be the same bytes.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from asgi_lifespan import LifespanManager
from conftest import make_settings
from httpx import ASGITransport, AsyncClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from gateway import models
from gateway.app import create_app
from gateway.db import create_engine, create_session_factory
from gateway.demo import seed_demo
from gateway.enums import Scope
from gateway.ids import encode_cursor, encode_id
from gateway.repositories.api_keys import create_api_key

REL = ["id", "externalId", "name", "__typename"]
FAILURE = ["category", "reason", "smtpCode", "occurredAt", "__typename"]
OPENS = ["count", "firstOpenedAt", "lastOpenedAt", "likelyAutomated", "notice", "__typename"]
COMPLAINT = ["complainedAt", "addressSuppressed", "notice", "__typename"]
DETAILS = [
    "emailId",
    "status",
    "statusChangedAt",
    "subject",
    "recipient",
    "sentAt",
    "deliveredAt",
    "historyAvailableUntil",
    "historyExpired",
    "__typename",
]
EMAIL = ["id", "externalId", "subject", "recipient", "sentAt", "emailStatus", "__typename"]
DOC = ["id", "externalId", "title", "emailStatus", "__typename"]
INV = ["id", "externalId", "number", "invoiceStatus", "emailStatus", "__typename"]
PAGE_INFO = ["hasNextPage", "hasPreviousPage", "startCursor", "endCursor", "__typename"]
# Fields the fast path leaves to the reference: generated now and then, so that
# the fallback is exercised too.
UNSUPPORTED = {
    "details": ["history { status }"],
    "relation": ["timeline { pageInfo { hasNextPage } }"],
    "item": ["emails { totalCount }"],
}


@st.composite
def _selection(draw: st.DrawFn, leaves: list[str], objects: dict[str, Any], extra: list[str] = ()) -> str:  # type: ignore[assignment]
    pool = leaves + list(objects) + (list(extra) if extra and draw(st.integers(0, 9)) == 0 else [])
    chosen = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=8, unique=True))
    parts = []
    for name in chosen:
        alias = (
            f"{name.split()[0].strip('_')}A{draw(st.integers(0, 3))}: "
            if draw(st.booleans()) and not name.startswith("_") and " " not in name
            else ""
        )
        if name in objects:
            parts.append(f"{alias}{name} {{ {draw(objects[name])} }}")
        else:
            parts.append(f"{alias}{name}")
    body = " ".join(parts)
    return draw(st.sampled_from([body, f"... on {{TYPE}} {{ {body} }}", body]))


def _fill(text: str, type_name: str) -> str:
    return text.replace("{TYPE}", type_name)


failure = _selection(FAILURE, {})
opens = _selection(OPENS, {})
complaint = _selection(COMPLAINT, {})
details = _selection(DETAILS, {"failure": failure, "opens": opens, "complaint": complaint}, UNSUPPORTED["details"])
relation = st.builds(lambda s: _fill(s, "Relation"), _selection(REL, {}, UNSUPPORTED["relation"]))
item_objects = {"relation": relation, "details": details.map(lambda s: _fill(s, "EmailDetails"))}
document = st.builds(lambda s: _fill(s, "Document"), _selection(DOC, item_objects, UNSUPPORTED["item"]))
invoice = st.builds(lambda s: _fill(s, "Invoice"), _selection(INV, item_objects, UNSUPPORTED["item"]))
email = st.builds(
    lambda s: _fill(s, "Email"),
    _selection(
        EMAIL,
        {
            "relation": relation,
            "documents": document,
            "invoice": invoice,
            "details": details.map(lambda s: _fill(s, "EmailDetails")),
        },
    ),
)


def connection(node: st.SearchStrategy[str], type_name: str) -> st.SearchStrategy[str]:
    edge = _selection(["cursor", "__typename"], {"node": node}).map(lambda s: _fill(s, f"{type_name}Edge"))
    page_info = _selection(PAGE_INFO, {}).map(lambda s: _fill(s, "PageInfo"))
    return _selection(["totalCount", "__typename"], {"pageInfo": page_info, "edges": edge}).map(
        lambda s: _fill(s, f"{type_name}Connection")
    )


@st.composite
def requests(draw: st.DrawFn, data: dict[str, Any]) -> dict[str, Any]:
    """A query over one to three screens, with arguments inline or in variables."""
    roots = draw(st.lists(st.sampled_from(["emails", "documents", "invoices"]), min_size=1, max_size=3))
    variables: dict[str, Any] = {}
    definitions: list[str] = []
    fields = []
    for n, root in enumerate(roots):
        type_name = {"emails": "Email", "documents": "Document", "invoices": "Invoice"}[root]
        node = {"emails": email, "documents": document, "invoices": invoice}[root]
        arguments = []
        first = draw(
            st.one_of(
                st.none(), st.integers(0, 100), st.integers(0, 100), st.integers(0, 100), st.sampled_from([-1, 101])
            )
        )
        if first is not None:
            if draw(st.booleans()):
                definitions.append(f"$first{n}: Int")
                variables[f"first{n}"] = first
                arguments.append(f"first: $first{n}")
            else:
                arguments.append(f"first: {first}")
        if draw(st.booleans()):
            kind = {"emails": "email", "documents": "document", "invoices": "invoice"}[root]
            row = draw(st.sampled_from(data["emails"]))
            after = encode_cursor(kind, row[1] if kind == "email" else None, row[0])
            after = draw(st.sampled_from([after] * 8 + ["garbage"]))
            definitions.append(f"$after{n}: String")
            variables[f"after{n}"] = after
            arguments.append(f"after: $after{n}")
        filter_value = draw(_filters(root, data))
        if filter_value is not None:
            filter_type = {"emails": "EmailFilter", "documents": "DocumentFilter", "invoices": "InvoiceFilter"}[root]
            definitions.append(f"$filter{n}: {filter_type}")
            variables[f"filter{n}"] = filter_value
            arguments.append(f"filter: $filter{n}")
        alias = f"r{n}: " if n or draw(st.booleans()) else ""
        args = f"({', '.join(arguments)})" if arguments else ""
        fields.append(f"{alias}{root}{args} {{ {draw(connection(node, type_name))} }}")
    header = f"query Screens({', '.join(definitions)})" if definitions else "query Screens"
    return {"query": f"{header} {{ {' '.join(fields)} }}", "variables": variables}


@st.composite
def _filters(draw: st.DrawFn, root: str, data: dict[str, Any]) -> dict[str, Any] | None:
    if draw(st.booleans()):
        return None
    statuses = st.lists(st.sampled_from(["SENT", "DELIVERED", "DELIVERY_FAILED", "OPENED"]), max_size=3, unique=True)
    relation_ids = st.sampled_from([*data["relations"], encode_id("Relation", 999_999), "not-an-id"])
    result: dict[str, Any] = {}
    if root == "emails":
        if draw(st.booleans()):
            result["statuses"] = draw(statuses)
        if draw(st.booleans()):
            result["complained"] = draw(st.sampled_from([True, False, None]))
        if draw(st.booleans()):
            result["search"] = draw(st.sampled_from(["factuur", "JAAR", "%", "_", "example.com", "zzz", ""]))
        if draw(st.booleans()):
            at = datetime(2026, 11, 20, 9, tzinfo=UTC) - timedelta(hours=draw(st.integers(0, 40)))
            result[draw(st.sampled_from(["sentAfter", "sentBefore"]))] = at.isoformat()
    else:
        if draw(st.booleans()):
            result["emailStatuses"] = draw(statuses)
        if root == "invoices" and draw(st.booleans()):
            result["invoiceStatuses"] = draw(
                st.lists(st.sampled_from(["DRAFT", "ISSUED", "PAID", "CANCELLED"]), max_size=2, unique=True)
            )
    if draw(st.booleans()):
        result["relationId"] = draw(relation_ids)
    return result


@pytest.fixture(scope="module")
def dataset(backend: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The demo data set, a read-only key, and the ids the generator draws from."""

    async def load() -> dict[str, Any]:
        settings = make_settings(backend, tmp_path_factory.mktemp("diff"))
        engine = create_engine(settings)
        factory = create_session_factory(engine)
        from conftest import _empty_tables

        await _empty_tables(engine)
        await seed_demo(factory, emails=120, seed=11)
        async with factory() as session:
            tenant = (await session.execute(select(models.Tenant).order_by(models.Tenant.id))).scalars().first()
            _, key = await create_api_key(session=session, tenant_id=tenant.id, scopes=frozenset({Scope.READ}))  # type: ignore[union-attr,arg-type]
            await session.commit()
            emails = (
                await session.execute(
                    select(models.Email.id, models.Email.sent_at).where(models.Email.tenant_id == tenant.id)
                )
            ).all()  # type: ignore[union-attr]
            relations = (
                (await session.execute(select(models.Relation.id).where(models.Relation.tenant_id == tenant.id)))
                .scalars()
                .all()
            )  # type: ignore[union-attr]
        await engine.dispose()
        return {
            "backend": backend,
            "key": key,
            "tenant": tenant.id,
            "emails": [tuple(e) for e in emails][:40],
            "relations": [encode_id("Relation", r) for r in relations][:10],
        }

    return asyncio.run(load())


async def _answers(
    data: dict[str, Any], tmp: Path, batch: list[dict[str, Any]]
) -> tuple[list[tuple[bytes, bytes, bytes]], int]:
    fast = create_app(make_settings(data["backend"], tmp / "fast"))
    reference = create_app(make_settings(data["backend"], tmp / "ref", fast_path=False))
    headers = {"Authorization": f"Bearer {data['key']}"}
    out = []
    async with LifespanManager(fast) as f, LifespanManager(reference) as r:
        async with (
            AsyncClient(transport=ASGITransport(app=f.app), base_url="http://t") as fc,
            AsyncClient(transport=ASGITransport(app=r.app), base_url="http://t") as rc,
        ):
            for request in batch:
                first = (await fc.post("/graphql", json=request, headers=headers)).content
                second = (await fc.post("/graphql", json=request, headers=headers)).content
                expected = (await rc.post("/graphql", json=request, headers=headers)).content
                out.append((first, second, expected))
            metrics = (await fc.get("/metrics")).text
    served = next(
        (
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith('gateway_fast_path_total{answered_by="plan"}')
        ),
        0.0,
    )
    return out, int(served)


BATCH = 15  # generated requests per example


def test_the_fast_path_answers_exactly_as_the_reference(dataset: dict[str, Any], tmp_path: Path) -> None:
    """Same bytes as strawberry for generated requests, and most of them answered by plans.

    The plan count is asserted here, over the examples this test ran, so the test
    stands alone: run singly or in any order, it checks both things.
    """
    served: list[int] = []

    @settings(
        max_examples=20,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.data())
    def same_bytes(data: st.DataObject) -> None:
        # given: generated requests over the three screens
        batch = [data.draw(requests(dataset)) for _ in range(BATCH)]
        # when
        answers, from_plans = asyncio.run(_answers(dataset, tmp_path, batch))
        # then: the same bytes, from the plan or not
        for request, (first, second, expected) in zip(batch, answers, strict=True):
            assert first == expected, request
            assert second == expected, f"fast path differs for {request}:\n{second[:400]!r}\n{expected[:400]!r}"
        served.append(from_plans)

    same_bytes()
    # and the examples exercised the plans, not only the fallback
    assert served, "hypothesis ran no example"
    assert sum(served) > 0.3 * BATCH * len(served), served


def test_a_literal_query_is_served_by_its_plan_with_the_same_bytes(dataset: dict[str, Any], tmp_path: Path) -> None:
    request = {
        "query": "{ emails(first: 50) { edges { node { id subject recipient emailStatus sentAt relation { name } documents { title } } } } }"
    }
    answers, served = asyncio.run(_answers(dataset, tmp_path, [request] * 3))
    assert served == 6  # every request, the very first included: the plan is compiled on first sight
    for first, second, expected in answers:
        assert first == second == expected
        assert len(orjson.loads(expected)["data"]["emails"]["edges"]) == 50


# Each screen, and its statements: the page carries its rows' own lookups; a lookup of a
# lookup (the relation of an e-mail's invoice) is one more statement, whatever the page size.
SCREENS = {
    "E-mails": "{ emails(first: 50) { edges { node { id subject recipient emailStatus sentAt relation { name } documents { title } } } } }",
    "E-mails with invoices": "{ emails(first: 50) { edges { node { id invoice { number invoiceStatus relation { name } } } } } }",
    "Documents": "{ documents(first: 50) { edges { node { id title emailStatus relation { name } } } } }",
    "Invoicing": "{ invoices(first: 50) { edges { node { id number invoiceStatus emailStatus relation { name } "
    "details { status sentAt failure { category } opens { count } } } } } }",
}


STATEMENTS = {"E-mails": 1, "E-mails with invoices": 2, "Documents": 1, "Invoicing": 1}


@pytest.mark.parametrize("screen", SCREENS)
def test_a_screen_is_one_statement_on_postgresql(dataset: dict[str, Any], screen: str) -> None:
    """The page carries its lookups, and the pool resets nothing: one round trip per request,
    with the same answer as one statement per lookup."""
    if not dataset["backend"].startswith("postgresql"):
        pytest.skip("the lookups fold into the page on PostgreSQL only")
    import asyncpg

    from gateway.app import _fast_pool
    from gateway.fastpath.plans import FastPath
    from gateway.fastpath.rows import PgRows, RepositoryRows
    from gateway.schema import build_schema, limits_of

    async def run() -> tuple[bytes | None, bytes | None, list[str]]:
        statements: list[str] = []

        async def log_queries(connection: asyncpg.Connection) -> None:
            connection.add_query_logger(lambda q: statements.append(q.query))

        pool = await _fast_pool(make_settings(dataset["backend"], Path("unused")))
        assert pool is not None
        async with pool.acquire() as connection:
            await log_queries(connection)
        settings = make_settings(dataset["backend"], Path("unused"))
        engine = create_engine(settings)
        try:
            fast = FastPath(build_schema(settings)._schema, limits=limits_of(settings), history_days=30)
            plan = fast.plan(SCREENS[screen], None)
            assert plan is not None, "the fast path must serve this screen"
            await fast.run(plan, None, dataset["tenant"], PgRows(pool))  # type: ignore[arg-type]
            statements.clear()  # the first run also introspected the records' types: once per connection
            folded = await fast.run(plan, None, dataset["tenant"], PgRows(pool))  # type: ignore[arg-type]
            separate = await fast.run(plan, None, dataset["tenant"], RepositoryRows(engine))  # type: ignore[arg-type]
        finally:
            await pool.close()
            await engine.dispose()
        return folded, separate, statements

    folded, separate, statements = asyncio.run(run())
    assert len(statements) == STATEMENTS[screen], statements
    assert folded is not None and folded == separate
    nodes = [e["node"] for e in orjson.loads(folded)["data"][next(iter(orjson.loads(folded)["data"]))]["edges"]]
    assert len(nodes) >= 30  # the demo data: 120 e-mails, 45 documents, 30 invoices
    assert any(n.get("relation") or (n.get("invoice") or {}).get("relation") for n in nodes), (
        "the data must hold relations"
    )
