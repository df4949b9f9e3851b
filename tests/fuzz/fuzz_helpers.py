"""A real gateway for the fuzz tests: uvicorn in a thread, demo data, keys, and the property."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn
from conftest import _empty_tables, make_settings
from factories import make_tenant
from waiting import eventually_blocking

from gateway.app import create_app
from gateway.config import Settings
from gateway.db import create_engine, create_session_factory
from gateway.demo import DEMO_TENANTS, seed_demo

PATIENCE = 30.0  # seconds: generous on a loaded 2-core machine; never a performance claim
UNEXPECTED = "Unexpected error."

# Every id and cursor a tenant can see, read back through the API itself, so the
# fuzzer draws real rows (its own) and real rows of another tenant (foreign).
COLLECT = """
query Collect($first: Int!) {
  emails(first: $first) {
    edges {
      cursor
      node {
        id
        relation {
          id
          timeline(first: 2) { edges { cursor node { ... on EmailInteraction { id } } } }
        }
        documents { id }
        invoice { id }
        details { history { id } }
      }
    }
  }
  documents(first: $first) { edges { cursor } }
  invoices(first: $first) { edges { cursor } }
}
"""


@dataclass
class Known:
    """Ids (by GraphQL type) and cursors of one tenant, as the API gave them."""

    # kept out of the repr: hypothesis prints the fixtures of a failing example
    ids: dict[str, list[str]] = field(default_factory=dict, repr=False)
    cursors: list[str] = field(default_factory=list, repr=False)

    def add(self, type_name: str, global_id: str) -> None:
        self.ids.setdefault(type_name, []).append(global_id)

    @property
    def all_ids(self) -> list[str]:
        return sorted({i for ids in self.ids.values() for i in ids})


@dataclass
class Gateway:
    """A served gateway: its URL, a read-write key of the demo tenant, and what to draw from."""

    url: str
    key: str = field(repr=False)
    own: Known = field(repr=False)
    foreign: Known = field(repr=False)

    def _repr_pretty_(self, printer: Any, _cycle: bool) -> None:
        # hypothesis prints the fixtures of a failing example: the URL says enough
        printer.text(f"Gateway({self.url!r})")

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _serving(settings: Settings) -> Iterator[str]:
    """`create_app(settings)` under uvicorn on a free loopback port, in a thread of its own.

    A thread and not the test's event loop: hypothesis drives the examples with
    blocking HTTP calls, so the server needs a loop that keeps running meanwhile.
    """
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=_free_port(),
            log_level="warning",
            lifespan="on",
        )
    )
    thread = threading.Thread(target=server.run, name="fuzzed-gateway", daemon=True)
    thread.start()
    try:
        eventually_blocking(
            lambda: server.started or not thread.is_alive(), what="the gateway started", within=PATIENCE
        )
        if not server.started:
            raise RuntimeError("the gateway's thread ended before it started")
    except BaseException:
        server.should_exit = True
        raise
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(PATIENCE)


async def _seed(settings: Settings) -> tuple[str, str]:
    """Empty tables, the demo data set, and a read-write key for each demo tenant."""
    engine = create_engine(settings)
    try:
        await _empty_tables(engine)
        factory = create_session_factory(engine)
        await seed_demo(factory, emails=60, seed=9)
        own = await make_tenant(factory, name=DEMO_TENANTS[0])
        foreign = await make_tenant(factory, name=DEMO_TENANTS[1])
        return own.key, foreign.key
    finally:
        await engine.dispose()


def _collect(url: str, key: str) -> Known:
    response = httpx.post(
        f"{url}/graphql",
        json={"query": COLLECT, "variables": {"first": 100}},
        headers={"Authorization": f"Bearer {key}"},
        timeout=PATIENCE,
    )
    body = response.json()
    if response.status_code != 200 or body.get("errors"):
        raise RuntimeError(f"collecting ids failed: {response.status_code} {body}")
    known = Known()
    data = body["data"]
    for connection in ("documents", "invoices"):
        known.cursors += [edge["cursor"] for edge in data[connection]["edges"]]
    for edge in data["emails"]["edges"]:
        known.cursors.append(edge["cursor"])
        email = edge["node"]
        known.add("Email", email["id"])
        for document in email["documents"]:
            known.add("Document", document["id"])
        for event in email["details"]["history"]:
            known.add("EmailEvent", event["id"])
        if email["invoice"]:
            known.add("Invoice", email["invoice"]["id"])
        if email["relation"]:
            known.add("Relation", email["relation"]["id"])
            for entry in email["relation"]["timeline"]["edges"]:
                known.cursors.append(entry["cursor"])
                known.add("EmailInteraction", entry["node"]["id"])
    # sorted and deduplicated: the same data gives the same draws on every run
    known.ids = {type_name: sorted(set(ids)) for type_name, ids in sorted(known.ids.items())}
    known.cursors = sorted(set(known.cursors))
    return known


@contextlib.contextmanager
def served_gateway(backend: str, data_dir: Path) -> Iterator[Gateway]:
    """A real gateway on `backend` with the demo data, and what the fuzzer needs to know of it."""
    settings = make_settings(backend, data_dir)
    own_key, foreign_key = asyncio.run(_seed(settings))
    with _serving(settings) as url:
        yield Gateway(url=url, key=own_key, own=_collect(url, own_key), foreign=_collect(url, foreign_key))


def assert_expected_answer(response: httpx.Response) -> None:
    """The property: no 5xx, and every GraphQL error is an expected one with `extensions.code`.

    A 4xx whose body is no GraphQL answer (a body that is not a GraphQL request)
    says what is wrong with its status alone; it is expected too.
    """
    answer = f"HTTP {response.status_code}: {response.text[:600]}"
    assert response.status_code < 500, f"server error; {answer}"
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        assert response.status_code >= 400, f"a 2xx that is not JSON; {answer}"
        return
    assert isinstance(body, dict), f"an answer that is not a JSON object; {answer}"
    errors: list[Any] = body.get("errors") or []
    assert response.status_code >= 400 or "data" in body or errors, f"neither data nor errors; {answer}"
    assert all(e.get("message") != UNEXPECTED for e in errors), f"an unexpected error; {answer}"
    assert all(isinstance((e.get("extensions") or {}).get("code"), str) for e in errors), (
        f"an error without extensions.code; {answer}"
    )
