"""GraphQL over HTTP: keys, scopes, bad input of every kind, limits, masking, health."""

from __future__ import annotations

import pytest
from asgi_lifespan import LifespanManager
from conftest import make_settings
from factories import make_tenant, register
from httpx import ASGITransport, AsyncClient
from sqlalchemy import event as sa_event
from sqlalchemy import func, select
from waiting import eventually

from gateway import models
from gateway.app import create_app
from gateway.ids import encode_id

EMAILS = "query Emails($first: Int, $after: String) { emails(first: $first, after: $after) { totalCount edges { node { id subject } } } }"
REGISTER = """
mutation Register($input: RegisterEmailInput!) { registerEmail(input: $input) { email { id } trackingPixelUrl } }
"""
GOOD_INPUT = {"externalId": "x-1", "subject": "Hello", "recipient": "a@example.com"}


async def email_count(session_factory) -> int:  # type: ignore[no-untyped-def]
    async with session_factory() as session:
        return int((await session.execute(select(func.count()).select_from(models.Email))).scalar_one())


async def post(client, query, variables=None, headers=None):  # type: ignore[no-untyped-def]
    return await client.post("/graphql", json={"query": query, "variables": variables or {}}, headers=headers or {})


@pytest.fixture
async def tenant(session_factory):  # type: ignore[no-untyped-def]
    return await make_tenant(session_factory)


async def test_a_valid_key_reads_its_tenant(client, tenant, session_factory):  # type: ignore[no-untyped-def]
    await register(session_factory, tenant, subject="Annual accounts")
    response = await post(client, EMAILS, headers=tenant.auth)
    assert response.status_code == 200
    body = response.json()
    assert body == {
        "data": {
            "emails": {
                "totalCount": 1,
                "edges": [
                    {"node": {"id": body["data"]["emails"]["edges"][0]["node"]["id"], "subject": "Annual accounts"}}
                ],
            }
        }
    }


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing API key: send Authorization: Bearer <key>"),
        ({"Authorization": "Bearer gw_not-a-real-key"}, "invalid API key"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "invalid API key"),
        ({"Authorization": "Bearer "}, "invalid API key"),
    ],
)
async def test_no_key_or_a_wrong_key_is_401(client, tenant, headers, message):  # type: ignore[no-untyped-def]
    response = await post(client, EMAILS, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["errors"][0] == {"message": message, "extensions": {"code": "UNAUTHENTICATED"}}


async def test_a_revoked_key_is_401(client, tenant, session_factory):  # type: ignore[no-untyped-def]
    async with session_factory() as session:
        for key in (await session.execute(select(models.ApiKey).where(models.ApiKey.tenant_id == tenant.id))).scalars():
            key.revoked_at = models.utcnow()
        await session.commit()
    assert (await post(client, EMAILS, headers=tenant.auth)).status_code == 401


async def test_a_read_only_key_cannot_mutate_over_http(client, tenant, session_factory):  # type: ignore[no-untyped-def]
    response = await post(client, REGISTER, {"input": GOOD_INPUT}, headers=tenant.read_auth)
    assert response.status_code == 200
    assert response.json()["errors"][0]["extensions"] == {"code": "FORBIDDEN"}
    assert await email_count(session_factory) == 0
    ok = await post(client, REGISTER, {"input": GOOD_INPUT}, headers=tenant.auth)
    assert "errors" not in ok.json() and await email_count(session_factory) == 1


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2", b'"just a string"', b"", b'{"query": 42}', b'{"variables": {}}'],
)
async def test_a_body_that_is_not_a_graphql_request_is_400(client, tenant, session_factory, body):  # type: ignore[no-untyped-def]
    response = await client.post("/graphql", content=body, headers={**tenant.auth, "content-type": "application/json"})
    assert response.status_code == 400
    assert response.text
    assert await email_count(session_factory) == 0


async def test_a_huge_body_is_413(client, tenant):  # type: ignore[no-untyped-def]
    query = "{ emails { totalCount } }" + " " * (1024 * 1024 + 10)
    response = await client.post("/graphql", json={"query": query}, headers=tenant.auth)
    assert response.status_code == 413


def _bad_queries() -> list[tuple[str, str, dict[str, object], str]]:
    return [
        ("syntax error", "{ emails { ", {}, "Syntax Error"),
        ("unknown field", "{ emails { nope } }", {}, "Cannot query field 'nope'"),
        ("wrong variable type", EMAILS, {"first": "ten"}, "Int cannot represent non-integer value"),
        (
            "unknown enum value",
            "query($s: [EmailStatus!]) { emails(filter: {statuses: $s}) { totalCount } }",
            {"s": ["BOUNCED"]},
            "does not exist in 'EmailStatus'",
        ),
        ("negative first", EMAILS, {"first": -1}, "`first` must be between 0 and 100, got -1"),
        ("huge first", EMAILS, {"first": 101}, "`first` must be between 0 and 100, got 101"),
        ("garbage cursor", EMAILS, {"after": "garbage!!"}, "Invalid cursor 'garbage!!'"),
        ("foreign cursor kind", EMAILS, {"after": "WyJkb2N1bWVudCIsbnVsbCwxXQ"}, "Invalid cursor"),
        ("malformed id", "query($id: ID!) { email(id: $id) { id } }", {"id": "%%%"}, "Invalid ID '%%%'"),
        (
            "id of another type",
            "query($id: ID!) { email(id: $id) { id } }",
            {"id": encode_id("Relation", 1)},
            "is not a Email id",
        ),
        (
            "naive date",
            "query($d: DateTime) { emails(filter: {sentAfter: $d}) { totalCount } }",
            {"d": "2026-01-01T00:00:00"},
            "needs an offset",
        ),
        (
            "not a date",
            "query($d: DateTime) { emails(filter: {sentAfter: $d}) { totalCount } }",
            {"d": "yesterday"},
            "is not ISO-8601",
        ),
        (
            "too deep",
            "{ emails { edges { node { relation { timeline { edges { node { ... on EmailInteraction { email { relation { timeline { edges { node { ... on EmailInteraction { email { subject } } } } } } } } } } } } } } } }",
            {},
            "exceeds maximum operation depth",
        ),
        (
            "too many aliases",
            "{ " + " ".join(f"a{i}: emails {{ totalCount }}" for i in range(31)) + " }",
            {},
            "aliases found",
        ),
        ("too many tokens", "{ emails { " + "totalCount " * 2100 + "} }", {}, "token"),
    ]


@pytest.mark.parametrize(("name", "query", "variables", "fragment"), _bad_queries(), ids=[c[0] for c in _bad_queries()])
async def test_bad_graphql_gets_a_clear_error_and_changes_nothing(
    client, tenant, session_factory, name, query, variables, fragment
):  # type: ignore[no-untyped-def]
    # given
    await register(session_factory, tenant)
    # when
    response = await post(client, query, variables, headers=tenant.auth)
    # then
    assert response.status_code in (200, 400)
    errors = response.json()["errors"]
    assert any(fragment in e["message"] for e in errors), errors
    assert all(e["message"] != "Unexpected error." for e in errors)
    assert await email_count(session_factory) == 1


async def test_bad_mutation_input_changes_nothing(client, tenant, session_factory):  # type: ignore[no-untyped-def]
    for bad in ({**GOOD_INPUT, "recipient": "nope"}, {**GOOD_INPUT, "sentAt": "soon"}, {"subject": "no external id"}):
        response = await post(client, REGISTER, {"input": bad}, headers=tenant.auth)
        assert response.json().get("errors"), bad
    assert await email_count(session_factory) == 0


async def test_get_cannot_mutate(client, tenant, session_factory):  # type: ignore[no-untyped-def]
    query = 'mutation { registerEmail(input: {externalId: "g", subject: "s", recipient: "a@b.c"}) { email { id } } }'
    response = await client.get("/graphql", params={"query": query}, headers=tenant.auth)
    assert response.status_code in (400, 405)
    assert await email_count(session_factory) == 0


async def test_unexpected_errors_are_masked_unless_debug(backend, tmp_path, session_factory, monkeypatch):  # type: ignore[no-untyped-def]
    from gateway.repositories import emails as repo

    async def broken(**_kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("database password is hunter2")

    monkeypatch.setattr(repo, "count_emails", broken)
    tenant = await make_tenant(session_factory)
    for debug, expected in ((False, "Unexpected error."), (True, "database password is hunter2")):
        # (the reference executor's masking: the compiled plans do not call the repository)
        app = create_app(make_settings(backend, tmp_path, debug=debug, fast_path=False))
        async with (
            LifespanManager(app) as manager,
            AsyncClient(transport=ASGITransport(app=manager.app), base_url="http://t") as c,
        ):
            response = await post(c, "{ emails { totalCount } }", headers=tenant.auth)
        assert response.json()["errors"][0]["message"] == expected


async def test_introspection_can_be_switched_off(backend, tmp_path, session_factory):  # type: ignore[no-untyped-def]
    tenant = await make_tenant(session_factory)
    for enabled in (True, False):
        app = create_app(make_settings(backend, tmp_path, introspection=enabled))
        async with (
            LifespanManager(app) as manager,
            AsyncClient(transport=ASGITransport(app=manager.app), base_url="http://t") as c,
        ):
            response = await post(c, "{ __schema { queryType { name } } }", headers=tenant.auth)
        body = response.json()
        if enabled:
            assert body["data"]["__schema"]["queryType"]["name"] == "Query"
        else:
            assert "introspection" in body["errors"][0]["message"].lower()


async def test_graphiql_is_served_to_a_browser_without_a_key(client):  # type: ignore[no-untyped-def]
    response = await client.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()


async def test_health_readiness_and_metrics(client, tenant):  # type: ignore[no-untyped-def]
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready", "database": "ok", "broker": "ok"}
    await post(client, EMAILS, headers=tenant.auth)
    await post(client, EMAILS, {"first": 1000}, headers=tenant.auth)
    await post(client, EMAILS)
    text = (await client.get("/metrics")).text
    assert 'gateway_http_requests_total{method="POST",route="/graphql",status="200"} 2.0' in text
    assert 'gateway_http_requests_total{method="POST",route="/graphql",status="401"} 1.0' in text
    assert 'gateway_graphql_errors_total{kind="expected"} 1.0' in text
    assert "gateway_http_request_duration_seconds_bucket" in text


async def test_readyz_says_when_the_database_is_down(tmp_path):  # type: ignore[no-untyped-def]
    app = create_app(make_settings("postgresql+asyncpg://postgres@127.0.0.1:1/none", tmp_path))
    async with (
        LifespanManager(app) as manager,
        AsyncClient(transport=ASGITransport(app=manager.app), base_url="http://t") as c,
    ):
        response = await c.get("/readyz")
    assert response.status_code == 503
    assert response.json()["database"] == "unreachable"


async def test_a_failed_root_field_cuts_no_query_of_its_siblings(backend, tmp_path, session_factory):  # type: ignore[no-untyped-def]
    # given: a request whose first root field fails at once while its siblings still query
    tenant = await make_tenant(session_factory)
    for n in range(3):
        await register(session_factory, tenant, documents=(f"doc-{n}",), relation=f"rel-{n}")
    query = (
        "{ a: emails(first: -1) { totalCount }"
        " b: documents(first: 10) { edges { node { title relation { name } details { status } } } }"
        " c: invoices(first: 10) { totalCount edges { node { number } } } }"
    )
    app = create_app(make_settings(backend, tmp_path, fast_path=False))
    invalidated: list[object] = []
    async with LifespanManager(app) as manager:
        sa_event.listen(app.state.engine.sync_engine.pool, "invalidate", lambda *args: invalidated.append(args[-1]))
        async with AsyncClient(transport=ASGITransport(app=manager.app), base_url="http://t") as c:
            for _ in range(10):
                # when
                body = (await post(c, query, headers=tenant.auth)).json()
                # then: the error is said, and the siblings that outlive the response hold no connection
                assert body["data"] is None
                assert body["errors"][0]["message"] == "`first` must be between 0 and 100, got -1"
            await eventually(
                lambda: app.state.engine.pool.checkedout() == 0,
                what="every connection back in the pool",
            )
            # and no connection was cut mid-statement by the siblings' cancellation
            assert invalidated == []
