"""The GraphiQL page over HTTP: same-origin files only, and none of it when GraphiQL is off."""

from __future__ import annotations

import re

from asgi_lifespan import LifespanManager
from conftest import make_settings
from httpx import ASGITransport, AsyncClient

from gateway.app import create_app
from gateway.config import Settings

BROWSER = {"Accept": "text/html"}


async def fetch_page_and_files(settings: Settings) -> tuple[object, dict[str, int]]:
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        async with AsyncClient(transport=ASGITransport(app=manager.app), base_url="http://gateway.test") as client:
            page = await client.get("/graphql", headers=BROWSER)
            files = re.findall(r'(?:src|href)="([^"]+)"', page.text)
            statuses = {f: (await client.get(f)).status_code for f in files if not f.startswith("data:")}
            statuses["/static/graphiql/graphiql.min.js"] = (
                await client.get("/static/graphiql/graphiql.min.js")
            ).status_code
    return page, statuses


async def test_the_page_loads_only_files_the_gateway_serves(backend, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # given
    settings = make_settings(backend, tmp_path)
    # when
    page, statuses = await fetch_page_and_files(settings)
    # then
    assert page.status_code == 200  # type: ignore[attr-defined]
    assert page.headers["content-security-policy"].startswith("default-src 'self'; script-src 'self';")  # type: ignore[attr-defined]
    assert "<script>" not in page.text  # type: ignore[attr-defined]  (no inline script to allow)
    assert len(statuses) >= 5
    assert all(f.startswith("/static/") for f in statuses)
    assert set(statuses.values()) == {200}


async def test_production_serves_neither_the_page_nor_its_files(backend, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # given
    settings = make_settings(backend, tmp_path, env="production")
    # when
    page, statuses = await fetch_page_and_files(settings)
    # then
    assert "graphiql" not in page.text.lower()  # type: ignore[attr-defined]
    assert statuses == {"/static/graphiql/graphiql.min.js": 404}
