"""emailStatusChanged over HTTP: multipart subscriptions, for networks that block websockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from conftest import make_settings
from factories import make_tenant
from live_helpers import CHANGES, PATIENCE, listening, record_via_api, register_via_api, serving

MULTIPART = 'multipart/mixed;subscriptionSpec="1.0", application/json'


@pytest.fixture
async def live(backend, tmp_path, session_factory):  # type: ignore[no-untyped-def]
    settings = make_settings(backend, tmp_path, purge_interval_seconds=0)
    async with serving(settings) as (address, app):
        yield address, app


@pytest.fixture
async def office(session_factory):  # type: ignore[no-untyped-def]
    return await make_tenant(session_factory)


class Parts:
    """The JSON parts of a multipart/mixed subscription stream, heartbeats ({}) left out."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._chunks = response.aiter_text()
        self._buffer = ""
        self.boundary = response.headers["content-type"].split("boundary=")[1].split(";")[0].strip('"')

    async def next(self) -> dict[str, Any]:
        async with asyncio.timeout(PATIENCE):
            while True:
                part = await self._part()
                if part:
                    return part

    async def _part(self) -> dict[str, Any]:
        delimiter = f"\r\n--{self.boundary}"
        while True:
            body_at = self._buffer.find("\r\n\r\n")
            end = self._buffer.find(delimiter, body_at + 4) if body_at >= 0 else -1
            if end >= 0:
                part = self._buffer[body_at + 4 : end]
                self._buffer = self._buffer[end + len(delimiter) :]
                return json.loads(part)  # type: ignore[no-any-return]
            self._buffer += await anext(self._chunks)


@contextlib.asynccontextmanager
async def subscribed(
    address: str, key: str, variables: dict[str, Any] | None = None, accept: str = MULTIPART
) -> AsyncIterator[Parts]:
    async with (
        httpx.AsyncClient(base_url=f"http://{address}", timeout=PATIENCE) as http,
        http.stream(
            "POST",
            "/graphql",
            json={"query": CHANGES, "variables": variables or {}},
            headers={"Authorization": f"Bearer {key}", "Accept": accept},
        ) as response,
    ):
        assert response.status_code == 200, await response.aread()
        yield Parts(response)


async def test_a_subscriber_over_http_sees_its_changes_as_they_happen(live, office):  # type: ignore[no-untyped-def]
    address, app = live
    # given
    async with subscribed(address, office.key) as parts:
        assert parts.response.headers["content-type"].startswith("multipart/mixed")
        await listening(app, 1)
        # when
        email_id = await register_via_api(address, office.key, "h-1", relation={"externalId": "r", "name": "Bakery"})
        await record_via_api(address, office.key, email_id, "DELIVERED", "d-1")
        # then
        first, second = (
            (await parts.next())["payload"]["data"]["emailStatusChanged"],
            (await parts.next())["payload"]["data"]["emailStatusChanged"],
        )
        assert (first["email"]["id"], first["status"], first["email"]["relation"]) == (
            email_id,
            "SENT",
            {"name": "Bakery"},
        )
        assert (second["previousStatus"], second["status"]) == ("SENT", "DELIVERED")


async def test_filters_and_since_work_over_http(live, office):  # type: ignore[no-untyped-def]
    address, app = live
    # given: a cursor, then changes missed, one of them outside the filter
    a = await register_via_api(address, office.key, "a")
    b = await register_via_api(address, office.key, "b")
    async with subscribed(address, office.key) as parts:
        await listening(app, 1)
        await record_via_api(address, office.key, a, "DELIVERED", "d-a")
        cursor = (await parts.next())["payload"]["data"]["emailStatusChanged"]["cursor"]
    await record_via_api(address, office.key, b, "DELIVERED", "d-b")
    await record_via_api(address, office.key, a, "OPENED", "o-a", occurred_at="2026-11-03T10:00:00Z")
    # when
    async with subscribed(address, office.key, {"since": cursor, "filter": {"emailIds": [a]}}) as parts:
        # then: only the filter's change after the cursor
        got = (await parts.next())["payload"]["data"]["emailStatusChanged"]
        assert (got["email"]["id"], got["status"]) == (a, "OPENED")


async def test_a_bad_cursor_over_http_ends_the_stream_with_its_error(live, office):  # type: ignore[no-untyped-def]
    address, _ = live
    async with subscribed(address, office.key, {"since": "garbage"}) as parts:
        message = await parts.next()
        assert "Invalid cursor" in message["payload"]["errors"][0]["message"]


async def test_http_subscriptions_need_an_api_key(live):  # type: ignore[no-untyped-def]
    address, _ = live
    async with httpx.AsyncClient(base_url=f"http://{address}") as http:
        response = await http.post("/graphql", json={"query": CHANGES}, headers={"Accept": MULTIPART})
    assert response.status_code == 401


async def test_a_client_that_does_not_ask_for_multipart_still_gets_the_400(live, office):  # type: ignore[no-untyped-def]
    address, _ = live
    async with httpx.AsyncClient(base_url=f"http://{address}") as http:
        response = await http.post(
            "/graphql", json={"query": CHANGES}, headers={"Authorization": f"Bearer {office.key}"}
        )
    assert response.status_code == 400
    assert "multipart/mixed" in response.text
