"""The raw ceiling of the screens benchmark: the gateway's own SQL, without GraphQL.

`capture()` runs the gateway in this process (its own `create_app`, the server's
environment) and records, with asyncpg's query logger, the exact statement and
parameters its fast path sends for each screen's request. `app()` is a Starlette +
asyncpg endpoint that answers those requests by sending the same statement with the
same parameters, and writing the rows as the screen's JSON with orjson: what is left of
a request once the GraphQL work (parsing, validation, plans, writers) is skipped.

    uvicorn --factory bench.ceiling:app    # with CEILING_DSN and CEILING_STATEMENTS set
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import orjson

from bench.harness.servers import BenchError

__all__ = ["DSN_ENV", "STATEMENTS_ENV", "Statement", "app", "capture", "save"]

DSN_ENV = "CEILING_DSN"
STATEMENTS_ENV = "CEILING_STATEMENTS"


@dataclass(frozen=True, slots=True)
class Statement:
    """What the gateway sent to PostgreSQL for one request."""

    screen: str
    sql: str
    args: list[Any]  # $1 is the tenant (the fast path's convention)


def capture(env: Mapping[str, str], key: str, requests: Mapping[str, bytes]) -> dict[str, Statement]:
    """The statement the gateway sends for each request body (screen: body), recorded in a
    gateway app run in this process with the server's environment. Each request is sent
    three times (the first compiles the plan); the last one's statements are kept, and
    there must be exactly one: the raw ceiling answers one-statement screens."""
    import asyncpg

    with warnings.catch_warnings():  # Starlette would have httpx2 for its TestClient: httpx does here
        warnings.simplefilter("ignore", DeprecationWarning)
        from starlette.testclient import TestClient

    from gateway.app import create_app
    from gateway.config import Settings

    logged: list[Any] = []
    create_pool = asyncpg.create_pool

    def logging_pool(*args: Any, **kwargs: Any) -> Any:
        # The fast path's pool, with asyncpg's query logger on each connection it opens.
        init = kwargs.get("init")

        async def with_logger(connection: asyncpg.Connection) -> None:
            connection.add_query_logger(logged.append)
            if init is not None:
                await init(connection)

        return create_pool(*args, **{**kwargs, "init": with_logger})

    found = {}
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    with mock.patch.dict(os.environ, env, clear=True), mock.patch.object(asyncpg, "create_pool", logging_pool):
        settings = Settings()  # the server's settings: read from the server's environment
        with TestClient(create_app(settings)) as client:
            for screen, body in requests.items():
                for _ in range(3):
                    logged.clear()
                    answer = client.post("/graphql", content=body, headers=headers)
                    if answer.status_code != 200 or b'"errors"' in answer.content:
                        raise BenchError(f"capture, {screen}: {answer.status_code} {answer.content[:300]!r}")
                client.get("/healthz")  # a turn of the loop: loggers run from call_soon
                if len(logged) != 1:
                    sent = "\n".join(q.query for q in logged) or "none through the fast path"
                    raise BenchError(f"capture, {screen}: expected one statement, the gateway sent:\n{sent}")
                found[screen] = Statement(screen, logged[0].query, list(logged[0].args))
    return found


def save(statements: Mapping[bytes, Statement], path: Path) -> None:
    """Write the statements by request body, for `app()`; BenchError if a parameter is not JSON."""
    try:
        path.write_bytes(
            orjson.dumps(
                [
                    {"body": body.decode(), "screen": s.screen, "sql": s.sql, "args": s.args}
                    for body, s in statements.items()
                ]
            )
        )
    except TypeError as error:
        raise BenchError(f"a captured parameter is not JSON: {error}") from None


# --- turning the rows into each screen's JSON --------------------------------------------

# A lookup the gateway carries in its page statement: "(SELECT ROW(f.a, f.b) FROM relation f
# ...) AS _fold0", or "ARRAY(SELECT ROW(...) FROM email_document l JOIN document f ...) AS _fold1".
_FOLD = re.compile(r"(ARRAY)?\(SELECT ROW\(([^)]*)\) FROM (\w+) (?:f|l JOIN (\w+) f)\b.*?\) AS (_fold\d+)")


def _folds(sql: str) -> dict[str, tuple[str, list[str], bool]]:
    """{fold column: (table, its columns, is a list)} of a captured statement."""
    folds = {}
    for array, columns, table, joined, name in _FOLD.findall(sql):
        folds[name] = (joined or table, [c.strip().removeprefix("f.") for c in columns.split(",")], bool(array))
    return folds


def _gid(type_name: str, pk: int) -> str:
    from gateway.ids import encode_id

    return encode_id(type_name, pk)


Node = Callable[[dict[str, Any]], dict[str, Any]]


def _relation(row: dict[str, Any]) -> dict[str, Any] | None:
    found = row.get("relation")
    return None if found is None else {"name": found["name"]}


def _email(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": _gid("Email", row["id"]),
        "subject": row["subject"],
        "recipient": row["recipient"],
        "emailStatus": row["status"],
        "sentAt": row["sent_at"],
        "relation": _relation(row),
        "documents": [{"title": d["title"]} for d in row["document"]],
    }


def _details(row: dict[str, Any]) -> dict[str, Any]:
    # The gateway's rule (gateway.schema): a failure is shown on a DELIVERY_FAILED e-mail only.
    failed = row["status"] == "DELIVERY_FAILED" and row["failure_category"] is not None
    return {
        **_email(row),
        "details": {
            "status": row["status"],
            "statusChangedAt": row["status_changed_at"],
            "failure": {"category": row["failure_category"], "reason": row["failure_reason"] or ""} if failed else None,
            "opens": {"count": row["open_count"], "likelyAutomated": row["opens_likely_automated"]},
        },
    }


def _latest_status(row: dict[str, Any]) -> str | None:
    latest = row.get("email")
    return None if latest is None else latest["status"]


def _document(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": _gid("Document", row["id"]),
        "title": row["title"],
        "emailStatus": _latest_status(row),
        "relation": _relation(row),
    }


def _invoice(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": _gid("Invoice", row["id"]),
        "number": row["number"],
        "invoiceStatus": row["invoice_status"],
        "emailStatus": _latest_status(row),
        "relation": _relation(row),
    }


_SCREENS: dict[str, tuple[str, Node]] = {
    "emails": ("emails", _email),
    "details": ("emails", _details),
    "documents": ("documents", _document),
    "invoices": ("invoices", _invoice),
}


@dataclass(frozen=True, slots=True)
class _Route:
    sql: str
    args: list[Any]
    root: str
    node: Node
    folds: dict[str, tuple[str, list[str], bool]]
    page: int


def _rows(records: list[Any], route: _Route) -> list[dict[str, Any]]:
    """Each record as a dict, its folds under their table's name ("relation", "document", "email")."""
    rows = []
    for record in records[: route.page]:
        row = dict(record)
        for name, (table, columns, many) in route.folds.items():
            value = row.pop(name)
            if many:
                row[table] = [dict(zip(columns, r, strict=True)) for r in value]
            else:
                row[table] = None if value is None else dict(zip(columns, value, strict=True))
        rows.append(row)
    return rows


def app() -> Any:
    """The raw ceiling: for a request body it knows, the API key checked (remembered, as the
    gateway remembers keys), then the gateway's statement and orjson."""
    import asyncpg
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from gateway.repositories.api_keys import hash_key

    routes: dict[bytes, _Route] = {}
    for item in orjson.loads(Path(os.environ[STATEMENTS_ENV]).read_bytes()):
        root, node = _SCREENS[item["screen"]]
        # The page's LIMIT is the last parameter: one row more than shown, to know of a next page.
        routes[item["body"].encode()] = _Route(
            item["sql"], item["args"], root, node, _folds(item["sql"]), item["args"][-1] - 1
        )
    pool: list[asyncpg.Pool] = []
    tenants: dict[str, int] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        pool.append(await asyncpg.create_pool(os.environ[DSN_ENV], min_size=1, max_size=10))
        yield
        await pool[0].close()

    def refuse(status: int, message: str) -> Response:
        return Response(orjson.dumps({"errors": [{"message": message}]}), status, media_type="application/json")

    async def graphql(request: Request) -> Response:
        route = routes.get(await request.body())
        if route is None:
            return refuse(400, "the raw ceiling answers the benchmark's screens only")
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key:
            return refuse(401, "unauthenticated")
        tenant = tenants.get(key)
        if tenant is None:
            found = await pool[0].fetchval(
                "SELECT tenant_id FROM api_key WHERE key_hash = $1 AND revoked_at IS NULL", hash_key(key)
            )
            if found is None:
                return refuse(401, "unauthenticated")
            tenant = tenants[key] = found
        records = await pool[0].fetch(route.sql, tenant, *route.args[1:])
        edges = [{"node": route.node(row)} for row in _rows(records, route)]
        return Response(orjson.dumps({"data": {route.root: {"edges": edges}}}), media_type="application/json")

    return Starlette(routes=[Route("/graphql", graphql, methods=["POST"])], lifespan=lifespan)
