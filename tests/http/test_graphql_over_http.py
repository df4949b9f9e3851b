"""The GraphQL-over-HTTP rules: operation choice, media types and status codes,
subscriptions refused over HTTP, an unreachable database, request ids and log lines."""

from __future__ import annotations

import asyncio
import logging
import os

import asyncpg
import pytest
from asgi_lifespan import LifespanManager
from conftest import PG_HOST, PG_PORT, make_settings, need_server
from factories import make_tenant, register
from httpx import ASGITransport, AsyncClient
from sqlalchemy import func, select

from gateway import models
from gateway.app import create_app
from gateway.migrations import upgrade

GRAPHQL_RESPONSE = "application/graphql-response+json"
MUTATION_THEN_QUERY = """
mutation M($input: RegisterEmailInput!) { registerEmail(input: $input) { email { id } } }
query Q { __typename }
"""
TWO_QUERIES = """
query Emails($first: Int) { emails(first: $first) { totalCount } }
query Documents($first: Int) { documents(first: $first) { totalCount } }
"""
EMAILS = "query Emails($first: Int) { emails(first: $first) { totalCount edges { node { subject } } } }"
EMAIL = "query Email($id: ID!) { email(id: $id) { id subject } }"
TIMELINE = "query Timeline($id: ID!) { relationTimeline(relationId: $id) { edges { cursor } } }"
CHANGES = "subscription Changes($since: String) { emailStatusChanged(since: $since) { cursor status } }"
GOOD_INPUT = {"externalId": "x-1", "subject": "Hello", "recipient": "a@example.com"}
UNAVAILABLE = "SERVICE_UNAVAILABLE"


async def email_count(session_factory) -> int:  # type: ignore[no-untyped-def]
    async with session_factory() as session:
        return int((await session.execute(select(func.count()).select_from(models.Email))).scalar_one())


async def post(client, query, variables=None, *, headers, accept=None, operation_name=None):  # type: ignore[no-untyped-def]
    body: dict[str, object] = {"query": query, "variables": variables or {}}
    if operation_name is not None:
        body["operationName"] = operation_name
    extra = {"accept": accept} if accept else {}
    return await client.post("/graphql", json=body, headers={**headers, **extra})


@pytest.fixture
async def tenant(session_factory):  # type: ignore[no-untyped-def]
    return await make_tenant(session_factory)


# 1. Several operations and no operationName


@pytest.mark.parametrize("accept", ["application/json", GRAPHQL_RESPONSE])
async def test_several_operations_without_a_name_run_none_of_them(client, tenant, session_factory, accept):  # type: ignore[no-untyped-def]
    # given: a document whose first operation is a mutation
    variables = {"input": GOOD_INPUT}
    # when
    response = await post(client, MUTATION_THEN_QUERY, variables, headers=tenant.auth, accept=accept)
    # then
    assert response.status_code == 400
    assert "Must provide operation name if query contains multiple operations." in response.text
    assert await email_count(session_factory) == 0


async def test_several_operations_with_a_name_run_that_one(client, tenant, session_factory):  # type: ignore[no-untyped-def]
    # when
    response = await post(client, MUTATION_THEN_QUERY, {"input": GOOD_INPUT}, headers=tenant.auth, operation_name="Q")
    # then
    assert response.status_code == 200
    assert response.json() == {"data": {"__typename": "Query"}}
    assert await email_count(session_factory) == 0


async def test_the_fast_path_does_not_answer_several_operations_without_a_name(backend, tmp_path, session_factory):  # type: ignore[no-untyped-def]
    # given: the fast path has learned both operations of the document by name
    tenant = await make_tenant(session_factory)
    await register(session_factory, tenant)
    app = create_app(make_settings(backend, tmp_path, fast_path=True))
    async with (
        LifespanManager(app) as manager,
        AsyncClient(transport=ASGITransport(app=manager.app), base_url="http://t") as c,
    ):
        for name in ("Emails", "Documents", "Emails", "Documents"):
            named = await post(c, TWO_QUERIES, {"first": 5}, headers=tenant.auth, operation_name=name)
            assert named.status_code == 200 and "errors" not in named.json()
        # when
        responses = [await post(c, TWO_QUERIES, {"first": 5}, headers=tenant.auth) for _ in range(3)]
    # then
    for response in responses:
        assert response.status_code == 400
        assert "Must provide operation name" in response.text


# 4. Media types and status codes


@pytest.mark.parametrize(
    ("accept", "media_type"),
    [
        (None, "application/json"),
        ("*/*", "application/json"),
        ("application/json", "application/json"),
        (GRAPHQL_RESPONSE, GRAPHQL_RESPONSE),
        (f"{GRAPHQL_RESPONSE}, application/json;q=0.9", GRAPHQL_RESPONSE),
        (f"application/json, {GRAPHQL_RESPONSE}", "application/json"),
    ],
)
@pytest.mark.parametrize("fast_path", [False, True])
async def test_the_answer_has_the_media_type_the_client_accepts(
    backend, tmp_path, session_factory, accept, media_type, fast_path
):  # type: ignore[no-untyped-def]
    # given
    tenant = await make_tenant(session_factory)
    await register(session_factory, tenant, subject="Hello")
    app = create_app(make_settings(backend, tmp_path, fast_path=fast_path))
    async with (
        LifespanManager(app) as manager,
        AsyncClient(transport=ASGITransport(app=manager.app), base_url="http://t") as c,
    ):
        # when: twice, so the second is served from a plan when the fast path is on
        responses = [await post(c, EMAILS, {"first": 5}, headers=tenant.auth, accept=accept) for _ in range(2)]
    # then
    for response in responses:
        assert response.status_code == 200
        assert response.headers["content-type"].split(";")[0] == media_type
        assert response.json() == {"data": {"emails": {"totalCount": 1, "edges": [{"node": {"subject": "Hello"}}]}}}


def _request_errors() -> list[tuple[str, str, dict[str, object]]]:
    return [
        ("does not parse", "{ emails { ", {}),
        ("does not validate", "{ emails { nope } }", {}),
        ("variables do not coerce", EMAILS, {"first": "ten"}),
        ("missing variable", EMAIL, {}),
    ]


@pytest.mark.parametrize(("name", "query", "variables"), _request_errors(), ids=[c[0] for c in _request_errors()])
async def test_a_request_that_cannot_run_is_400_without_data_for_graphql_response_json(
    client, tenant, name, query, variables
):  # type: ignore[no-untyped-def]
    # when
    response = await post(client, query, variables, headers=tenant.auth, accept=GRAPHQL_RESPONSE)
    # then
    assert response.status_code == 400
    assert response.headers["content-type"].split(";")[0] == GRAPHQL_RESPONSE
    body = response.json()
    assert "data" not in body
    assert body["errors"]


@pytest.mark.parametrize(("name", "query", "variables"), _request_errors(), ids=[c[0] for c in _request_errors()])
async def test_a_request_that_cannot_run_stays_200_for_application_json(client, tenant, name, query, variables):  # type: ignore[no-untyped-def]
    # when
    response = await post(client, query, variables, headers=tenant.auth, accept="application/json")
    # then
    assert response.status_code == 200
    assert response.json()["errors"]


async def test_a_field_error_with_data_stays_200_for_graphql_response_json(client, tenant):  # type: ignore[no-untyped-def]
    # when: the request runs; one field fails
    response = await post(client, EMAIL, {"id": "%%%"}, headers=tenant.auth, accept=GRAPHQL_RESPONSE)
    # then
    assert response.status_code == 200
    body = response.json()
    assert body["data"] == {"email": None}
    assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT"}


# 5. Subscriptions over HTTP


@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_a_subscription_over_http_is_400_and_no_unexpected_error(client, tenant, method):  # type: ignore[no-untyped-def]
    # when
    if method == "POST":
        response = await post(client, CHANGES, headers=tenant.auth)
    else:
        response = await client.get("/graphql", params={"query": CHANGES}, headers=tenant.auth)
    # then
    assert response.status_code == 400
    assert "subscriptions are served over websockets" in response.text
    metrics = (await client.get("/metrics")).text
    assert 'gateway_graphql_errors_total{kind="unexpected"}' not in metrics


# 3. The database goes away


async def test_a_database_that_cannot_be_reached_answers_503_before_graphql(tmp_path):  # type: ignore[no-untyped-def]
    # given: nothing listens where the database should be, so the key cannot be checked
    app = create_app(make_settings("postgresql+asyncpg://postgres@127.0.0.1:1/none", tmp_path))
    async with (
        LifespanManager(app) as manager,
        AsyncClient(transport=ASGITransport(app=manager.app), base_url="http://t") as c,
    ):
        # when
        response = await post(c, EMAILS, headers={"Authorization": "Bearer gw_some-key"})
    # then
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert response.json()["errors"][0]["extensions"] == {"code": UNAVAILABLE}


async def _pg_admin(sql: str) -> None:
    connection = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user="postgres", database="postgres")
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture
async def doomed_database(tmp_path):  # type: ignore[no-untyped-def]
    """A migrated PostgreSQL database of its own, which the test drops while a gateway uses it."""
    need_server("PostgreSQL", PG_HOST, PG_PORT)
    name = f"gateway_doomed_{os.getpid()}"
    await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await _pg_admin(f'CREATE DATABASE "{name}"')
    url = f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    await asyncio.to_thread(upgrade, make_settings(url, tmp_path))
    yield url, _pg_admin(f'DROP DATABASE "{name}" WITH (FORCE)')
    await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("fast_path", [False, True])
async def test_queries_while_the_database_is_gone_say_service_unavailable(doomed_database, tmp_path, caplog, fast_path):  # type: ignore[no-untyped-def]
    # given: a gateway that has checked its client's key once (the key is cached)
    url, drop = doomed_database
    app = create_app(make_settings(url, tmp_path, fast_path=fast_path, key_cache_seconds=60))
    async with (
        LifespanManager(app) as manager,
        AsyncClient(transport=ASGITransport(app=manager.app), base_url="http://t") as c,
    ):
        from gateway.db import create_engine, create_session_factory

        engine = create_engine(make_settings(url, tmp_path))
        tenant = await make_tenant(create_session_factory(engine))
        await engine.dispose()
        for _ in range(2):  # the second one from a plan when the fast path is on
            assert (await post(c, EMAILS, headers=tenant.auth)).json()["data"]["emails"]["totalCount"] == 0
        # when: the database goes away
        await drop
        caplog.clear()
        with caplog.at_level(logging.INFO):
            as_json = await post(c, EMAILS, headers=tenant.auth)
            as_graphql = await post(c, EMAILS, headers=tenant.auth, accept=GRAPHQL_RESPONSE)
    # then
    for response, status in ((as_json, 200), (as_graphql, 503)):
        assert response.status_code == status
        error = response.json()["errors"][0]
        assert error["extensions"] == {"code": UNAVAILABLE}
        assert error["message"] == "The database is unavailable; retry later."
    assert as_graphql.headers["retry-after"]
    # and the log says so in a line each, with no traceback
    lines = [r for r in caplog.records if r.name == "gateway.errors"]
    assert [r.levelno for r in lines] == [logging.WARNING, logging.WARNING]
    assert all(r.exc_info is None and r.error_code == UNAVAILABLE for r in lines)


def test_a_database_starting_up_is_unavailable_not_a_bug():
    # given: asyncpg's error for "the database system is starting up" (SQLSTATE 57P03)
    from sqlalchemy.exc import DBAPIError

    from gateway.db import database_unavailable

    starting = asyncpg.CannotConnectNowError("the database system is starting up")
    # when / then: raw (the fast path's pool) and as SQLAlchemy wraps it
    assert database_unavailable(starting)
    wrapped = DBAPIError("SELECT 1", None, _WithSqlState(starting.sqlstate))
    assert database_unavailable(wrapped)
    assert not database_unavailable(DBAPIError("SELECT 1", None, _WithSqlState("23505")))  # a unique violation
    assert not database_unavailable(RuntimeError("a bug"))


class _WithSqlState(Exception):
    """The driver-level error SQLAlchemy keeps as `orig`: asyncpg's adapter gives it `sqlstate`."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


# 6. Request ids and log lines


async def test_the_request_id_is_the_clients_or_a_new_one_and_comes_back(client, tenant):  # type: ignore[no-untyped-def]
    # when
    given = await post(client, EMAILS, headers={**tenant.auth, "X-Request-Id": "trace-42"})
    made = [await post(client, EMAILS, headers=tenant.auth) for _ in range(2)]
    garbage = await post(client, EMAILS, headers={**tenant.auth, "X-Request-Id": "a b\tc"})
    unauthenticated = await post(client, EMAILS, headers={"X-Request-Id": "trace-43"})
    # then
    assert given.headers["x-request-id"] == "trace-42"
    assert made[0].headers["x-request-id"] != made[1].headers["x-request-id"]
    assert all(len(r.headers["x-request-id"]) == 32 for r in made)
    assert garbage.headers["x-request-id"] not in ("a b\tc", "")
    assert unauthenticated.headers["x-request-id"] == "trace-43"


def _client_mistakes() -> list[tuple[str, str, dict[str, object], str]]:
    return [
        ("bad input", EMAIL, {"id": "%%%"}, "BAD_USER_INPUT"),
        ("not found", TIMELINE, {"id": "UmVsYXRpb246OTk5OTk"}, "NOT_FOUND"),
        (
            "bad cursor",
            "query Emails($after: String) { emails(after: $after) { totalCount } }",
            {"after": "garbage!!"},
            "BAD_USER_INPUT",
        ),
        ("page size", EMAILS, {"first": 1000}, "BAD_USER_INPUT"),
        ("validation", "query Emails { emails { nope } }", {}, "GRAPHQL_VALIDATION_FAILED"),
        ("syntax", "query Emails { emails { ", {}, "GRAPHQL_PARSE_FAILED"),
        ("variables", EMAILS, {"first": "ten"}, "BAD_USER_INPUT"),
    ]


@pytest.mark.parametrize(
    ("name", "query", "variables", "code"), _client_mistakes(), ids=[c[0] for c in _client_mistakes()]
)
async def test_a_client_mistake_is_one_log_line_without_a_traceback(
    client, tenant, caplog, name, query, variables, code
):  # type: ignore[no-untyped-def]
    # given
    operation = query.split()[1].split("(")[0]
    # when
    with caplog.at_level(logging.DEBUG):
        response = await post(
            client, query, variables, headers={**tenant.auth, "X-Request-Id": "mistake-1"}, operation_name=operation
        )
    # then
    assert response.json()["errors"]
    # (besides the request's completion line, which every request has, and the fast
    # path's note, once per document, that this operation is the reference's to run)
    quiet = {"gateway.requests", "gateway.fastpath.plans"}
    records = [
        r
        for r in caplog.records
        if r.levelno >= logging.INFO and not r.name.startswith("httpx") and r.name not in quiet
    ]
    assert len(records) == 1, [r.getMessage() for r in records]
    record = records[0]
    assert record.levelno == logging.INFO
    assert record.exc_info is None
    assert (record.request_id, record.tenant_id, record.error_code) == ("mistake-1", tenant.id, code)
    assert "mistake-1" in record.getMessage() and code in record.getMessage()
    assert record.operation_name == operation


async def test_a_forbidden_mutation_is_one_log_line(client, tenant, caplog):  # type: ignore[no-untyped-def]
    # when: a read-only key tries to write
    with caplog.at_level(logging.DEBUG):
        response = await post(
            client, MUTATION_THEN_QUERY, {"input": GOOD_INPUT}, headers=tenant.read_auth, operation_name="M"
        )
    # then
    assert response.json()["errors"][0]["extensions"] == {"code": "FORBIDDEN"}
    records = [r for r in caplog.records if r.name == "gateway.errors" or r.name.startswith("strawberry")]
    assert [(r.levelno, r.exc_info, r.error_code, r.operation_name) for r in records] == [
        (logging.INFO, None, "FORBIDDEN", "M")
    ]


async def test_an_unexpected_error_is_logged_once_with_its_traceback(
    backend, tmp_path, session_factory, monkeypatch, caplog
):  # type: ignore[no-untyped-def]
    from gateway.repositories import emails as repo

    async def broken(**_kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("a bug")

    # given
    monkeypatch.setattr(repo, "count_emails", broken)
    tenant = await make_tenant(session_factory)
    app = create_app(make_settings(backend, tmp_path, fast_path=False))
    async with (
        LifespanManager(app) as manager,
        AsyncClient(transport=ASGITransport(app=manager.app), base_url="http://t") as c,
    ):
        # when
        with caplog.at_level(logging.DEBUG):
            response = await post(c, EMAILS, headers={**tenant.auth, "X-Request-Id": "bug-1"})
    # then
    assert response.json()["errors"][0]["message"] == "Unexpected error."
    records = [r for r in caplog.records if r.name == "gateway.errors" or r.name.startswith("strawberry")]
    assert len(records) == 1
    assert records[0].levelno == logging.ERROR
    assert records[0].exc_info is not None and records[0].exc_info[1].args == ("a bug",)
    assert (records[0].request_id, records[0].tenant_id) == ("bug-1", tenant.id)
