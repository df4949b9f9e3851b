"""Browsers on other origins (CORS) and compressed answers, through the real app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import orjson
import pytest
from asgi_lifespan import LifespanManager
from conftest import make_settings
from factories import make_tenant, register
from httpx import ASGITransport, AsyncClient, Response
from pydantic import ValidationError

from gateway.app import create_app
from gateway.config import Settings
from gateway.pixel import tracking_url

FRONT_END = "https://app.example.test"
OTHER_SITE = "https://evil.example.test"
EMAILS = (
    "query Emails($first: Int) { emails(first: $first) { totalCount"
    " edges { node { id subject recipient emailStatus } } } }"
)
# What Apollo Client sends from a browser, with the key and a request id.
APOLLO_HEADERS = (
    "authorization",
    "content-type",
    "x-apollo-operation-name",
    "apollo-require-preflight",
    "x-request-id",
)
COUNT = "query Count { emails(first: 1) { totalCount } }"


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[AsyncClient]:
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        async with AsyncClient(transport=ASGITransport(app=manager.app), base_url="http://gateway.test") as c:
            yield c


@pytest.fixture
def app_with(backend: str, tmp_path, session_factory) -> Callable[..., AbstractAsyncContextManager[AsyncClient]]:  # type: ignore[no-untyped-def]
    """`async with app_with(**settings) as client`: the real app with these settings, on empty tables."""

    def make(**overrides: object) -> AbstractAsyncContextManager[AsyncClient]:
        return serving(make_settings(backend, tmp_path, **overrides))

    return make


def preflight(origin: str, headers: str = "authorization,content-type") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": headers,
    }


async def post(client: AsyncClient, query: str, variables: dict[str, object], headers: dict[str, str]) -> Response:
    """httpx decodes a gzipped body; the headers stay as they came (encoding, length on the wire)."""
    return await client.post("/graphql", json={"query": query, "variables": variables}, headers=headers)


# --- CORS ---------------------------------------------------------------------


async def test_a_preflight_from_an_allowed_origin_is_answered_and_cached(app_with) -> None:  # type: ignore[no-untyped-def]
    # given
    async with app_with(cors_origins=[FRONT_END], cors_max_age_seconds=900) as client:
        # when
        answer = await client.options("/graphql", headers=preflight(FRONT_END, ",".join(APOLLO_HEADERS)))
    # then
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == FRONT_END
    assert answer.headers["access-control-max-age"] == "900"
    allowed = {h.strip().lower() for h in answer.headers["access-control-allow-headers"].split(",")}
    assert set(APOLLO_HEADERS) <= allowed
    assert "POST" in answer.headers["access-control-allow-methods"]


async def test_an_allowed_origin_reads_the_answer_and_its_request_id(app_with, session_factory) -> None:  # type: ignore[no-untyped-def]
    # given
    tenant = await make_tenant(session_factory)
    async with app_with(cors_origins=[FRONT_END]) as client:
        # when
        answer = await client.post("/graphql", json={"query": COUNT}, headers={**tenant.auth, "Origin": FRONT_END})
    # then
    assert answer.status_code == 200
    assert answer.json() == {"data": {"emails": {"totalCount": 0}}}
    assert answer.headers["access-control-allow-origin"] == FRONT_END
    assert "x-request-id" in answer.headers["access-control-expose-headers"].lower()
    assert "origin" in answer.headers["vary"].lower()


async def test_another_origin_gets_no_cors_headers(app_with, session_factory) -> None:  # type: ignore[no-untyped-def]
    # given
    tenant = await make_tenant(session_factory)
    async with app_with(cors_origins=[FRONT_END]) as client:
        # when
        refused = await client.options("/graphql", headers=preflight(OTHER_SITE))
        answered = await client.post("/graphql", json={"query": COUNT}, headers={**tenant.auth, "Origin": OTHER_SITE})
    # then: the preflight fails, so a browser never sends the request; a server still may
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    assert "access-control-allow-origin" not in answered.headers


async def test_webhooks_never_answer_a_preflight(app_with) -> None:  # type: ignore[no-untyped-def]
    # given
    async with app_with(cors_origins=[FRONT_END]) as client:
        # when
        answer = await client.options("/webhooks/sendgrid", headers=preflight(FRONT_END))
        posted = await client.post("/webhooks/sendgrid", content=b"[]", headers={"Origin": FRONT_END})
    # then
    assert answer.status_code == 405
    assert "access-control-allow-origin" not in answer.headers
    assert "access-control-allow-origin" not in posted.headers


async def test_without_origins_there_is_no_cors(app_with) -> None:  # type: ignore[no-untyped-def]
    # given
    async with app_with() as client:
        # when
        answer = await client.options("/graphql", headers=preflight(FRONT_END))
    # then
    assert answer.status_code == 405
    assert "access-control-allow-origin" not in answer.headers


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("*", "not '*'"),
        (f"{FRONT_END},*", "not '*'"),
        (f"{FRONT_END}/", "is not an origin"),
        ("app.example.test", "is not an origin"),
    ],
)
def test_the_origins_setting_refuses_a_wildcard_and_what_is_no_origin(tmp_path, monkeypatch, value, message) -> None:  # type: ignore[no-untyped-def]
    # given
    monkeypatch.setenv("GATEWAY_CORS_ORIGINS", value)
    # when / then
    with pytest.raises(ValidationError, match=message):
        Settings(data_dir=tmp_path)


def test_the_origins_setting_is_a_comma_separated_list(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # given
    monkeypatch.setenv("GATEWAY_CORS_ORIGINS", f" {FRONT_END}, http://localhost:5173 ,")
    # when
    settings = Settings(data_dir=tmp_path)
    # then
    assert settings.cors_origins == [FRONT_END, "http://localhost:5173"]


# --- compression ----------------------------------------------------------------


async def test_a_page_of_100_rows_arrives_gzipped_and_decodes_to_the_same_json(app_with, session_factory) -> None:  # type: ignore[no-untyped-def]
    # given
    tenant = await make_tenant(session_factory)
    for _ in range(100):
        await register(session_factory, tenant)
    async with app_with() as client:
        # when: twice, so the fast path's answer is checked as well as strawberry's
        plain = await post(client, EMAILS, {"first": 100}, {**tenant.auth, "Accept-Encoding": "identity"})
        zipped = [
            await post(client, EMAILS, {"first": 100}, {**tenant.auth, "Accept-Encoding": "gzip"}) for _ in range(2)
        ]
    # then
    assert "content-encoding" not in plain.headers
    expected = orjson.loads(plain.content)
    assert len(expected["data"]["emails"]["edges"]) == 100
    for answer in zipped:
        assert answer.headers["content-encoding"] == "gzip"
        assert "accept-encoding" in answer.headers["vary"].lower()
        assert int(answer.headers["content-length"]) < len(plain.content) / 3
        assert orjson.loads(answer.content) == expected  # httpx decoded what came gzipped


async def test_small_answers_and_the_tracking_image_are_not_compressed(app_with, settings, session_factory) -> None:  # type: ignore[no-untyped-def]
    # given: a threshold the 43-byte GIF is above, so only its content type spares it
    tenant = await make_tenant(session_factory)
    email = await register(session_factory, tenant)
    gif_path = tracking_url("", settings.signing_key(), email.tracking_id)
    async with app_with(compression_min_bytes=40) as client:
        # when
        small = await post(client, COUNT, {}, {**tenant.auth, "Accept-Encoding": "gzip"})
        gif = await client.get(gif_path, headers={"Accept-Encoding": "gzip"})
    # then
    assert len(small.content) < 40
    assert "content-encoding" not in small.headers
    assert gif.status_code == 200
    assert gif.headers["content-type"] == "image/gif"
    assert "content-encoding" not in gif.headers


async def test_compression_min_bytes_0_turns_it_off(app_with, session_factory) -> None:  # type: ignore[no-untyped-def]
    # given
    tenant = await make_tenant(session_factory)
    for _ in range(20):
        await register(session_factory, tenant)
    async with app_with(compression_min_bytes=0) as client:
        # when
        answer = await post(client, EMAILS, {"first": 20}, {**tenant.auth, "Accept-Encoding": "gzip"})
    # then
    assert len(answer.content) > 2000
    assert "content-encoding" not in answer.headers
