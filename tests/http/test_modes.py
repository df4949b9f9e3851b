"""Development (the default) and production mode: what each shows of the schema."""

from __future__ import annotations

import pytest
from asgi_lifespan import LifespanManager
from conftest import make_settings
from factories import make_tenant
from httpx import ASGITransport, AsyncClient

from gateway.app import create_app
from gateway.config import Settings

TYPO = "query Typo { emailz { id } }"
BAD_ENUM = "query Bad($f: EmailFilter) { emails(filter: $f) { totalCount } }"
INTROSPECTION = "{ __schema { queryType { name } } }"


async def answers(settings: Settings, auth: dict[str, str]) -> dict[str, object]:
    app = create_app(settings)
    async with (
        LifespanManager(app) as manager,
        AsyncClient(transport=ASGITransport(app=manager.app), base_url="http://t") as c,
    ):
        typo = (await c.post("/graphql", json={"query": TYPO}, headers=auth)).json()
        enum = (
            await c.post(
                "/graphql", json={"query": BAD_ENUM, "variables": {"f": {"statuses": ["SENTT"]}}}, headers=auth
            )
        ).json()
        schema = (await c.post("/graphql", json={"query": INTROSPECTION}, headers=auth)).json()
        ide = await c.get("/graphql", headers={"accept": "text/html"})
    return {
        "typo": typo["errors"][0]["message"],
        "enum": enum["errors"][0]["message"],
        "introspection": "data" in schema and schema["data"] is not None,
        "graphiql": ide.status_code == 200 and "graphiql" in ide.text.lower(),
    }


def test_production_turns_off_introspection_suggestions_and_graphiql_unless_each_is_on(tmp_path):
    development = Settings(data_dir=tmp_path)
    production = Settings(data_dir=tmp_path, env="production")
    overridden = Settings(data_dir=tmp_path, env="production", introspection=True, suggestions=True, graphiql=True)
    assert (development.introspection, development.suggestions, development.graphiql) == (True, True, True)
    assert (production.introspection, production.suggestions, production.graphiql) == (False, False, False)
    assert (overridden.introspection, overridden.suggestions, overridden.graphiql) == (True, True, True)


def test_the_mode_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("GATEWAY_ENV", "production")
    monkeypatch.setenv("GATEWAY_GRAPHIQL", "true")
    settings = Settings(data_dir=tmp_path)
    assert (settings.env, settings.introspection, settings.graphiql) == ("production", False, True)
    monkeypatch.setenv("GATEWAY_ENV", "staging")
    with pytest.raises(ValueError, match="env"):
        Settings(data_dir=tmp_path)


async def test_development_suggests_and_production_does_not(backend, tmp_path, session_factory):
    # given
    tenant = await make_tenant(session_factory)
    # when
    development = await answers(make_settings(backend, tmp_path / "dev"), tenant.auth)
    production = await answers(make_settings(backend, tmp_path / "prod", env="production"), tenant.auth)
    # then: the schema's names stay hidden in production, in validation and in variables
    assert development["typo"] == "Cannot query field 'emailz' on type 'Query'. Did you mean 'email' or 'emails'?"
    assert "Did you mean" in str(development["enum"])
    assert (development["introspection"], development["graphiql"]) == (True, True)
    assert production["typo"] == "Cannot query field 'emailz' on type 'Query'."
    assert "Did you mean" not in str(production["enum"])
    assert "SENTT" in str(production["enum"])
    assert (production["introspection"], production["graphiql"]) == (False, False)
