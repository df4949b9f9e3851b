"""Persisted documents over HTTP: automatic persisted queries (APQ) and trusted documents."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from asgi_lifespan import LifespanManager
from conftest import make_settings
from factories import make_tenant, register
from httpx import ASGITransport, AsyncClient
from test_http_audits import NODE_DIR, PATIENCE, _serving, audit_tools  # noqa: F401  (a fixture)

from gateway.app import create_app
from gateway.documents import read_documents, register_documents

EMAILS = "query Persisted($first: Int) { emails(first: $first) { totalCount edges { node { subject } } } }"
NOT_FOUND = {"errors": [{"message": "PersistedQueryNotFound", "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"}}]}


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def persisted(digest: str) -> dict[str, object]:
    return {"persistedQuery": {"version": 1, "sha256Hash": digest}}


@pytest.fixture
async def tenant(session_factory):  # type: ignore[no-untyped-def]
    tenant = await make_tenant(session_factory)
    await register(session_factory, tenant, n=1, subject="Annual accounts")
    return tenant


@pytest.fixture
async def trusted_client(settings, session_factory) -> AsyncIterator[AsyncClient]:  # type: ignore[no-untyped-def]
    """A gateway that runs registered documents only."""
    app = create_app(make_settings(settings.database_url, settings.data_dir, trusted_documents_only=True))
    async with LifespanManager(app) as manager:
        async with AsyncClient(transport=ASGITransport(app=manager.app), base_url="http://testserver") as c:
            yield c


async def test_an_unknown_hash_asks_for_the_query_then_the_hash_alone_runs_over_post_and_get(client, tenant):  # type: ignore[no-untyped-def]
    # given a query this gateway has never seen
    digest = sha256(EMAILS)
    hash_only = {"variables": {"first": 5}, "extensions": persisted(digest)}
    # when: Apollo's PersistedQueryLink sends the hash, then hash and query, then the hash again
    unknown = await client.post("/graphql", json=hash_only, headers=tenant.auth)
    both = await client.post("/graphql", json={**hash_only, "query": EMAILS}, headers=tenant.auth)
    again = await client.post("/graphql", json=hash_only, headers=tenant.auth)
    over_get = await client.get(
        "/graphql",
        params={"variables": json.dumps({"first": 5}), "extensions": json.dumps(persisted(digest))},
        headers=tenant.auth,
    )
    # then
    assert unknown.status_code == 200 and unknown.json() == NOT_FOUND
    expected = {"data": {"emails": {"totalCount": 1, "edges": [{"node": {"subject": "Annual accounts"}}]}}}
    assert both.json() == expected
    assert again.status_code == 200 and again.json() == expected
    assert over_get.status_code == 200 and over_get.json() == expected


async def test_an_unknown_hash_over_get_is_not_found_too(client, tenant):  # type: ignore[no-untyped-def]
    # given / when
    response = await client.get(
        "/graphql", params={"extensions": json.dumps(persisted(sha256("{ __typename }")))}, headers=tenant.auth
    )
    # then
    assert response.json() == NOT_FOUND


async def test_a_hash_that_is_not_the_querys_is_refused_and_nothing_is_kept(client, tenant):  # type: ignore[no-untyped-def]
    # given a hash of another text
    digest = sha256(EMAILS + " ")
    # when
    mismatch = await client.post(
        "/graphql", json={"query": EMAILS, "extensions": persisted(digest)}, headers=tenant.auth
    )
    later = await client.post("/graphql", json={"extensions": persisted(digest)}, headers=tenant.auth)
    bad_version = await client.post(
        "/graphql",
        json={"query": EMAILS, "extensions": {"persistedQuery": {"version": 2, "sha256Hash": digest}}},
        headers=tenant.auth,
    )
    # then
    assert mismatch.json()["errors"] == [
        {
            "message": f"persistedQuery.sha256Hash {digest} is not the SHA-256 of the query sent",
            "extensions": {"code": "BAD_USER_INPUT"},
        }
    ]
    assert later.json() == NOT_FOUND
    assert bad_version.json()["errors"][0]["extensions"] == {"code": "PERSISTED_QUERY_NOT_SUPPORTED"}


async def test_graphql_response_clients_get_a_400_for_an_unknown_hash(client, tenant):  # type: ignore[no-untyped-def]
    # given / when
    response = await client.post(
        "/graphql",
        json={"extensions": persisted(sha256("{ emails { totalCount } }"))},
        headers={**tenant.auth, "Accept": "application/graphql-response+json"},
    )
    # then
    assert response.status_code == 400
    assert response.json() == NOT_FOUND


async def test_a_persisted_query_is_served_by_its_compiled_plan(client, tenant):  # type: ignore[no-untyped-def]
    # given: the document sent with its hash, answered once by the reference
    digest = sha256(EMAILS)
    await client.post("/graphql", json={"query": EMAILS, "extensions": persisted(digest)}, headers=tenant.auth)

    async def served_by_plans() -> float:
        text = (await client.get("/metrics")).text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith('gateway_fast_path_total{answered_by="plan"}')
        )

    before = await served_by_plans()
    # when: the hash alone
    response = await client.post(
        "/graphql", json={"variables": {"first": 1}, "extensions": persisted(digest)}, headers=tenant.auth
    )
    # then
    assert orjson.loads(response.content)["data"]["emails"]["totalCount"] == 1
    assert await served_by_plans() == before + 1


async def test_trusted_documents_only_runs_registered_documents(trusted_client, tenant, session_factory):  # type: ignore[no-untyped-def]
    # given one registered document
    trusted = "query Trusted { emails(first: 3) { totalCount } }"
    async with session_factory() as session:
        await register_documents(session=session, documents={sha256(trusted): trusted})
    other = "query Other { emails(first: 2) { totalCount } }"
    # when
    by_hash = await trusted_client.post(
        "/graphql", json={"extensions": persisted(sha256(trusted))}, headers=tenant.auth
    )
    by_text = await trusted_client.post("/graphql", json={"query": trusted}, headers=tenant.auth)
    ad_hoc = await trusted_client.post("/graphql", json={"query": other}, headers=tenant.auth)
    apq = await trusted_client.post(
        "/graphql", json={"query": other, "extensions": persisted(sha256(other))}, headers=tenant.auth
    )
    unknown = await trusted_client.post("/graphql", json={"extensions": persisted(sha256(other))}, headers=tenant.auth)
    # then
    assert by_hash.json() == {"data": {"emails": {"totalCount": 1}}}
    assert by_text.json() == {"data": {"emails": {"totalCount": 1}}}
    assert ad_hoc.json()["errors"] == [
        {
            "message": "This gateway runs trusted documents only, and a document that was not is not registered: "
            "register it at build time with `gateway register-documents`",
            "extensions": {"code": "TRUSTED_DOCUMENT_REQUIRED"},
        }
    ]
    for refused in (apq, unknown):
        assert refused.json()["errors"][0]["extensions"] == {"code": "TRUSTED_DOCUMENT_REQUIRED"}
        assert sha256(other) in refused.json()["errors"][0]["message"]


def test_documents_are_read_from_graphql_files_and_both_manifest_formats(tmp_path):  # type: ignore[no-untyped-def]
    # given a .graphql file, GraphQL Codegen's {hash: document} and Apollo's manifest
    source = "query   Screen { emails(first: 3) { totalCount } }\n"
    printed = "query Screen {\n  emails(first: 3) {\n    totalCount\n  }\n}"
    codegen = "query Codegen { documents { totalCount } }"
    apollo = "query Apollo { invoices { totalCount } }"
    (tmp_path / "screen.graphql").write_text(source)
    (tmp_path / "codegen.json").write_text(json.dumps({sha256(codegen): codegen}))
    (tmp_path / "apollo.json").write_text(
        json.dumps(
            {
                "format": "apollo-persisted-query-manifest",
                "version": 1,
                "operations": [{"id": sha256(apollo), "name": "Apollo", "type": "query", "body": apollo}],
            }
        )
    )
    (tmp_path / "forged.json").write_text(json.dumps({sha256(codegen): apollo}))
    # when
    documents = read_documents(sorted(tmp_path.glob("[sac]*.*")))
    # then: a file counts as written and as graphql-js prints it (what Apollo Client hashes)
    assert documents == {
        sha256(source): source,
        sha256(printed): printed,
        sha256(codegen): codegen,
        sha256(apollo): apollo,
    }
    with pytest.raises(ValueError, match="forged.json: '[0-9a-f]{64}' is not the SHA-256 of its document"):
        read_documents([tmp_path / "forged.json"])


def test_register_documents_stores_them_once(tmp_path):  # type: ignore[no-untyped-def]
    # given a fresh SQLite database and a manifest
    text = "query Cli { emails { totalCount } }"
    manifest = tmp_path / "persisted-documents.json"
    manifest.write_text(json.dumps({sha256(text): text}))
    env = {"GATEWAY_DATA_DIR": str(tmp_path), "GATEWAY_SECRET_KEY": "test-secret-key-that-is-long-enough-0123456789"}

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603  (our own command)
            [sys.executable, "-m", "gateway.cli", "register-documents", str(manifest)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )

    # when
    first, second = run(), run()
    # then
    assert (first.returncode, first.stdout.strip()) == (0, "registered 1 new trusted documents (0 already known)")
    assert second.stdout.strip() == "registered 0 new trusted documents (1 already known)"


async def test_apollo_clients_persisted_query_link_works_over_post_and_get(
    audit_tools, backend, tmp_path, session_factory
):  # type: ignore[no-untyped-def]
    # given: a gateway on a real port, and one e-mail
    tenant = await make_tenant(session_factory)
    await register(session_factory, tenant, n=1, subject="Annual accounts")
    app = create_app(make_settings(backend, tmp_path))
    async with _serving(app) as url:
        # when: Apollo Client (createPersistedQueryLink, sha256 from node:crypto) asks twice, by POST then by GET
        process = await asyncio.create_subprocess_exec(
            audit_tools,
            "apq.mjs",
            url,
            cwd=NODE_DIR,
            env={"PATH": str(Path(audit_tools).parent), "GATEWAY_KEY": tenant.key},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(PATIENCE):
            out, err = await process.communicate()
    # then: the first time the hash is unknown and the link sends the query; then the hash alone
    assert process.returncode == 0, err.decode()
    results = json.loads(out)
    for transport, method in (("post", "POST"), ("get", "GET")):
        first, second = results[transport]
        assert first["data"]["emails"]["totalCount"] == 1
        assert [e["node"]["subject"] for e in second["data"]["emails"]["edges"]] == ["Annual accounts"]
        assert second["data"]["emails"]["pageInfo"]["hasPreviousPage"] is False
        assert second["requests"] == [{"method": method, "withQuery": False}]
    assert results["post"][0]["requests"] == [
        {"method": "POST", "withQuery": False},
        {"method": "POST", "withQuery": True},
    ]
    # the GET client found the hash the POST client registered
    assert results["get"][0]["requests"] == [{"method": "GET", "withQuery": False}]
