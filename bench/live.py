"""Live-subscription benchmark: webhook-to-subscriber latency and idle memory of `gateway serve`.

What the product promises (DESIGN.md, "Live: subscriptions"), measured here and never
asserted by a test: against ONE `gateway serve` process, with 1,000 and then 10,000
concurrent subscriptions (real websockets on loopback, graphql-transport-ws), a status
change made through a webhook reaches the subscribers with p99 latency under 100 ms at
1,000 and under 1 s at 10,000, and an idle subscription costs under 50 KiB of server
resident memory.

Honest by construction: the server is a real `gateway serve` child process on a real
database (a fresh PostgreSQL database `gateway_bench_live_<pid>` on 127.0.0.1:5432, or
a SQLite file); the subscribers are real websockets opened by a SEPARATE client process
(`multiprocessing`, so the server's event loop does not share the Python loop of the
clients); the changes are real SendGrid Event Webhook requests signed with a fresh ECDSA
P-256 key. Every subscriber must receive every change exactly once; anything missing or
doubled is reported and makes the exit status non-zero.

    .venv/bin/python -m bench.live --help
    .venv/bin/python -m bench.live          # 1,000 then 10,000, PostgreSQL, memory broker
    .venv/bin/python -m bench.live --subscribers 1000 --database sqlite
    .venv/bin/python -m bench.live --subscribers 10000 --py-spy /tmp/spy/bin/py-spy
    .venv/bin/python -m bench.live --subscribers 1000 --tracemalloc   # where the idle memory goes

Latency is measured from the monotonic time right after each webhook's HTTP answer to
the monotonic time each client read the change off its socket (CLOCK_MONOTONIC is one
clock for every process of the machine). See bench/README.md, "Live subscriptions".
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import multiprocessing
import os
import resource
import secrets
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/live.py` puts bench/ first, not the project
    sys.path.insert(0, str(ROOT))

# After the path set-up above:
from bench.harness import databases  # noqa: E402
from bench.harness.cpu import machine_cpu, proc_cpu, proc_status_kib  # noqa: E402
from bench.harness.pyspy import PySpy, shares  # noqa: E402
from bench.harness.sendgrid import FILTER_SUFFIX, key_pair, signed_headers  # noqa: E402
from bench.harness.servers import (  # noqa: E402
    BenchError,
    Server,
    create_api_key,
    free_port,
    gateway_command,
    gateway_env,
    run,
    settings_from_args,
)
from bench.harness.stats import ms as _ms  # noqa: E402
from bench.harness.stats import percentile  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/0"
PROTOCOL = "graphql-transport-ws"
GOALS = {1_000: 0.100, 10_000: 1.0}  # p99 delivery latency promised at these sizes (seconds)
MEMORY_GOAL_KIB = 50.0
_INSTRUMENTED_SERVE = "_serve-instrumented"

SUBSCRIPTION = "subscription { emailStatusChanged { cursor status email { id } } }"
REGISTER = "mutation($i: RegisterEmailInput!) { registerEmail(input: $i) { email { id } } }"


@dataclass(frozen=True, slots=True)
class Change:
    """One webhook event that changes one e-mail's status; `key` is what subscribers see."""

    email_id: str  # the global id registerEmail answered
    message_id: str
    kind: str  # SendGrid event: delivered or open
    status: str  # the status the subscribers must see: DELIVERED or OPENED
    occurred_at: int  # Unix seconds

    @property
    def key(self) -> str:
        return f"{self.email_id}|{self.status}"

    def body(self) -> bytes:
        event: dict[str, Any] = {
            "email": "client@example.com",
            "timestamp": self.occurred_at,
            "smtp-id": f"<{self.message_id}@ismtpd0001p1lon1.sendgrid.net>",
            "event": self.kind,
            "category": ["invoices"],
            "sg_event_id": base64.b64encode(secrets.token_bytes(16)).decode(),
            "sg_message_id": self.message_id + FILTER_SUFFIX,
        }
        if self.kind == "delivered":
            event.update(response="250 2.0.0 OK", tls=1, ip="149.72.123.24")
        else:
            event.update(
                useragent="Mozilla/5.0 (Windows NT 10.0; Win64; x64) Outlook/16.0",
                ip="82.94.12.7",
                sg_machine_open=False,
            )
        return json.dumps([event]).encode()


# --- the server ----------------------------------------------------------------------


def server_command(
    port: int, instruments: Path | None, tracemalloc_on: bool, gc_on: bool, what_if: Sequence[str]
) -> list[str]:
    """`gateway serve`, or the same through this script's instrumented wrapper."""
    if instruments is None:
        return [*gateway_command(), "serve", "--port", str(port)]
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        _INSTRUMENTED_SERVE,
        str(instruments),
        str(port),
        str(int(tracemalloc_on)),
        str(int(gc_on)),
        ",".join(what_if),
    ]


def rss_kib(server: Server) -> int:
    return proc_status_kib(server.pid, "VmRSS")


WHAT_IF = {
    "executor-memo": (
        "graphql-core's per-event executor gets its own sub-field memo (the memo it shares "
        "with the subscription's executor keeps every event's field lists: memory grows "
        "with each delivery)"
    ),
    "no-deflate": ("uvicorn without permessage-deflate (each connection keeps a zlib compressor and decompressor)"),
}


def apply_what_if(patches: Sequence[str]) -> None:
    """Monkeypatches in the instrumented server process ONLY: each is a change proposed for
    gateway/, tried here so that its effect can be measured before anybody makes it."""
    if "executor-memo" in patches:
        from graphql.execution import executor
        from graphql.pyutils import RefMap

        per_event = executor.Executor.build_per_event_executor

        def fresh_memo(self: Any, payload: Any) -> Any:
            event_executor = per_event(self, payload)
            event_executor._relevant_sub_fields = {}
            event_executor._stream_usages = RefMap()
            return event_executor

        executor.Executor.build_per_event_executor = fresh_memo  # type: ignore[method-assign]
    if "no-deflate" in patches:
        import uvicorn

        run = uvicorn.run

        def patched_run(app: Any, **kwargs: Any) -> None:
            kwargs["ws_per_message_deflate"] = False
            run(app, **kwargs)

        uvicorn.run = patched_run


def serve_instrumented(out: str, port: str, tracemalloc_on: str, gc_on: str, what_if: str = "") -> None:
    """The server process for --tracemalloc / --gc-stats / --what-if: `gateway serve`, with
    tracemalloc on (SIGUSR1 writes <out>/snapshot-<n>.pickle) and/or the garbage collector's
    passes timed (SIGUSR2 writes <out>/gc-<n>.json, cumulative), and/or proposed changes
    monkeypatched in (see WHAT_IF). The gateway's files are not changed."""
    import gc
    import tracemalloc

    from gateway.cli import main

    apply_what_if([p for p in what_if.split(",") if p])

    taken = {"snapshot": 0, "gc": 0}
    passes: dict[int, list[float]] = {0: [0, 0.0, 0.0, 0], 1: [0, 0.0, 0.0, 0], 2: [0, 0.0, 0.0, 0]}
    started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        entry = passes[info["generation"]]
        took = time.perf_counter() - started[0]
        entry[0] += 1
        entry[1] += took
        entry[2] = max(entry[2], took)
        entry[3] += info["collected"]

    def snapshot(*_: Any) -> None:
        taken["snapshot"] += 1
        path = Path(out) / f"snapshot-{taken['snapshot']}.pickle"
        tracemalloc.take_snapshot().dump(str(path))
        path.with_suffix(".done").touch()

    def gc_report(*_: Any) -> None:
        taken["gc"] += 1
        path = Path(out) / f"gc-{taken['gc']}.json"
        path.write_text(
            json.dumps(
                {
                    "passes": passes,
                    "objects": len(gc.get_objects()),
                    "thresholds": gc.get_threshold(),
                }
            )
        )
        path.with_suffix(".done").touch()

    if tracemalloc_on == "1":
        tracemalloc.start(12)
        signal.signal(signal.SIGUSR1, snapshot)
    if gc_on == "1":
        gc.callbacks.append(on_gc)
        signal.signal(signal.SIGUSR2, gc_report)
    main(["serve", "--port", port])


def _ask(server: Server, directory: Path, stem: str, number: int, sig: int, timeout: float = 180) -> Path:
    path = directory / f"{stem}-{number}"
    server.signal(sig)
    deadline = time.monotonic() + timeout
    while not path.with_suffix(".done").exists():
        if time.monotonic() > deadline:
            raise BenchError(f"the instrumented server wrote no {stem} file")
        time.sleep(0.05)
    return path


def take_snapshot(server: Server, directory: Path, number: int) -> Path:
    return _ask(server, directory, "snapshot", number, signal.SIGUSR1).with_suffix(".pickle")


def gc_stats(server: Server, directory: Path, number: int) -> dict[str, Any]:
    return json.loads(_ask(server, directory, "gc", number, signal.SIGUSR2).with_suffix(".json").read_text())  # type: ignore[no-any-return]


def report_gc(before: dict[str, Any], after: dict[str, Any], seconds: float) -> None:
    print(
        f"  garbage collector while delivering ({after['objects']:,} objects tracked at the end, "
        f"thresholds {tuple(after['thresholds'])}):"
    )
    total = 0.0
    for generation in ("0", "1", "2"):
        b, a = before["passes"][generation], after["passes"][generation]
        count, took = a[0] - b[0], a[1] - b[1]
        total += took
        print(
            f"    generation {generation}: {count:,} passes, {took:.2f} s in all, "
            f"longest {_ms(a[2])} (longest of the whole run), {a[3] - b[3]:,} objects freed"
        )
    print(f"    = {total / seconds:.0%} of the wall time spent in the collector")


def report_tracemalloc(before: Path, after: Path, subscribers: int, what: str, top: int = 25) -> None:
    import tracemalloc

    ignore = [
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"),
    ]
    old = tracemalloc.Snapshot.load(str(before)).filter_traces(ignore)
    new = tracemalloc.Snapshot.load(str(after)).filter_traces(ignore)
    by_line = new.compare_to(old, "lineno")
    total = sum(d.size_diff for d in by_line)
    print(
        f"  tracemalloc: Python heap {total / 1024 / 1024:+,.1f} MiB for {subscribers:,} {what} "
        f"= {total / subscribers / 1024:,.2f} KiB each (traced allocations only: not the "
        "kernel's buffers, nor fragmentation)"
    )
    print(f"  top {top} lines by growth (bytes and blocks per unit):")
    for diff in by_line[:top]:
        frame = diff.traceback[0]
        name = frame.filename.replace(str(ROOT) + "/", "").replace(sys.prefix + "/lib/python3.11/site-packages/", "")
        size, count = diff.size_diff / subscribers, diff.count_diff / subscribers
        print(f"    {size:9,.0f} B  {count:6.1f}  {name}:{frame.lineno}")
    by_file: dict[str, int] = defaultdict(int)
    for diff in by_line:
        name = diff.traceback[0].filename.replace(sys.prefix + "/lib/python3.11/site-packages/", "")
        package = name.split("/")[0] if not name.startswith(str(ROOT)) else "gateway/" + Path(name).name
        by_file[package] += diff.size_diff
    print("  growth by package (bytes per unit):")
    for package, size in sorted(by_file.items(), key=lambda kv: -kv[1])[:12]:
        print(f"    {size / subscribers:9,.0f} B  {package}")
    grouped = new.compare_to(old, "traceback")
    print("  the three largest growths, with their call stacks:")
    for diff in grouped[:3]:
        size, count = diff.size_diff / subscribers, diff.count_diff / subscribers
        print(f"    {size:,.0f} B per unit, {count:.1f} blocks:")
        for line in diff.traceback.format(limit=8, most_recent_first=True):
            print(
                "      " + line.replace(str(ROOT) + "/", "").replace(sys.prefix + "/lib/python3.11/site-packages/", "")
            )


PY_SPY_RATE = 250


def report_py_spy(spy: PySpy, top: int = 30) -> None:
    stacks = spy.stop()
    if stacks is None:
        return
    total = sum(c for _, c in stacks)
    print(f"  py-spy: {total:,} busy samples at {PY_SPY_RATE}/s (raw stacks in {spy.out})")
    site = sys.prefix + "/lib/python3.11/site-packages/"
    for line in shares(stacks, top, keep=str(ROOT) + "/"):
        print(line.replace(site, ""))


class WriterWatch:
    """Samples, every 0.2 s, the oldest transaction holding a transaction id in ANOTHER
    database of the PostgreSQL cluster. The gateway's change feed reads below
    pg_snapshot_xmin(pg_current_snapshot()), which is cluster-wide: such a transaction
    holds every delivery back until it ends. On a shared server (other people's tests
    and benchmarks) this explains latencies that the gateway's own load does not."""

    SQL = """
        SELECT coalesce(max(extract(epoch FROM now() - xact_start)), 0), count(*)
        FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND datname IS DISTINCT FROM $1
    """

    def __init__(self, database: str) -> None:
        import threading

        self.database = database
        self.oldest = 0.0
        self.busy_samples = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()

    async def _run(self) -> None:
        import asyncpg

        connection = await asyncpg.connect(
            host=databases.PG_HOST, port=databases.PG_PORT, user=databases.PG_USER, database="postgres"
        )
        try:
            while not self._stop.is_set():
                age, count = await connection.fetchrow(self.SQL, self.database)
                self.samples += 1
                if count:
                    self.busy_samples += 1
                    self.oldest = max(self.oldest, float(age))
                await asyncio.sleep(0.2)
        finally:
            await connection.close()

    def stop(self) -> str:
        self._stop.set()
        self._thread.join(timeout=10)
        if not self.busy_samples:
            return "no writing transaction open in another database of the PostgreSQL cluster while measuring"
        share = self.busy_samples / max(1, self.samples)
        return (
            "a writing transaction was open in another database of the PostgreSQL cluster in "
            f"{share:.0%} of the samples, the oldest for {self.oldest:.1f} s; the feed's "
            "watermark (pg_snapshot_xmin) is cluster-wide: such a transaction holds every "
            "delivery back until it ends"
        )


# --- HTTP set-up ----------------------------------------------------------------


def create_key(env: dict[str, str], workdir: Path) -> str:
    run([*gateway_command(), "migrate"], env, cwd=workdir)
    return create_api_key(env, "Live Bench", cwd=workdir)


def register_emails(url: str, key: str, count: int) -> list[tuple[str, str]]:
    """`count` e-mails through the registerEmail mutation: (global id, provider message id)."""
    import httpx

    sent_at = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    emails = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        for n in range(count):
            message_id = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
            variables = {
                "i": {
                    "externalId": f"live-{n}-{secrets.token_hex(4)}",
                    "subject": f"Factuur 2026-{n:06d}",
                    "recipient": "client@example.com",
                    "sentAt": sent_at,
                    "providerMessageId": message_id,
                }
            }
            answer = http.post("/graphql", json={"query": REGISTER, "variables": variables})
            body = answer.json()
            if answer.status_code != 200 or body.get("errors"):
                raise BenchError(f"registerEmail answered {answer.status_code}: {body}")
            emails.append((body["data"]["registerEmail"]["email"]["id"], message_id))
    return emails


def plan_changes(emails: Sequence[tuple[str, str]], count: int) -> list[Change]:
    """`count` status changes, alternately delivered and opened, one e-mail each.

    One event per e-mail, so that each is a real change (SENT -> DELIVERED or SENT -> OPENED)
    whatever order the server applies them in: with the webhooks in flight together, an
    open applied before its e-mail's delivery would make that delivery no change at all
    (OPENED outranks DELIVERED), and the subscribers would rightly never hear of it."""
    base = int(time.time()) - 1800
    changes = []
    for n in range(count):
        email_id, message_id = emails[n]
        kind, status = ("delivered", "DELIVERED") if n % 2 == 0 else ("open", "OPENED")
        changes.append(Change(email_id, message_id, kind, status, base + n * 10))
    return changes


@dataclass(slots=True)
class Posted:
    change: Change
    sent: float  # monotonic, before the request
    answered: float  # monotonic, right after the answer


def post_change(http: Any, private_key: Any, change: Change) -> Posted:
    body = change.body()
    headers = signed_headers(private_key, body)
    sent = time.monotonic()
    answer = http.post("/webhooks/sendgrid", content=body, headers=headers)
    answered = time.monotonic()
    if answer.status_code != 200 or answer.json().get("applied") != 1:
        raise BenchError(f"webhook for {change.key} answered {answer.status_code}: {answer.text[:300]}")
    return Posted(change, sent, answered)


# --- the client process -------------------------------------------------------------


def client_process(conn: Connection, address: str, key: str, count: int, parallel: int, kind: str) -> None:
    """Open `count` subscriptions, then obey the main process's commands over `conn`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    try:
        runner(_client(conn, address, key, count, parallel, kind))
    except BaseException as error:
        with contextlib.suppress(Exception):
            conn.send(("crashed", f"{type(error).__name__}: {error}"))
        raise


def client_kind(args: argparse.Namespace) -> str:
    if args.client == "raw":
        return "raw"
    return "deflate" if args.compression == "deflate" else "plain"


class RawSubscriber(asyncio.Protocol):
    """One subscription, spoken at the byte level (RFC 6455 framing, graphql-transport-ws).

    The `websockets` client costs tens of microseconds of client CPU per message, and
    on a 2-core machine the client processes then compete with the server for the
    cores: at 10,000 subscribers they measured themselves. This client parses each
    frame's header by hand and records the receipt: a few microseconds a message.
    """

    def __init__(self, index: int, subs: _Subscribers, address: str, init: str, subscribe: str, pong: str) -> None:
        loop = asyncio.get_running_loop()
        self.index, self.subs = index, subs
        self.messages = (init, subscribe, pong)
        self.request = (
            f"GET /graphql HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}"
            f"\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {PROTOCOL}\r\n\r\n"
        ).encode()
        self.mask = os.urandom(4)
        self.buffer = bytearray()
        self.upgraded = False
        self.transport: asyncio.Transport | None = None
        self.subscribed: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def send(self, opcode: int, payload: bytes) -> None:
        size = len(payload)
        if size < 126:
            header = bytes((0x80 | opcode, 0x80 | size))
        else:
            header = bytes((0x80 | opcode, 0x80 | 126)) + size.to_bytes(2, "big")
        mask = self.mask
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
        self.transport.write(header + mask + masked)  # type: ignore[union-attr]

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.closing = True
            self.send(0x8, (1000).to_bytes(2, "big"))
            self.transport.close()
        elif not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self._fail(f"upgrade refused: {bytes(buffer[:end])[:100]!r}")
                return
            del buffer[: end + 4]
            self.upgraded = True
            self.send(0x1, self.messages[0].encode())
        while len(buffer) >= 2:
            first, size = buffer[0], buffer[1] & 0x7F
            start = 2
            if size == 126:
                if len(buffer) < 4:
                    return
                size, start = int.from_bytes(buffer[2:4], "big"), 4
            elif size == 127:
                if len(buffer) < 10:
                    return
                size, start = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < start + size:
                return
            payload = bytes(buffer[start : start + size])
            del buffer[: start + size]
            opcode = first & 0x0F
            if not first & 0x80:
                self.subs.other["a fragmented frame"] += 1
            elif opcode in (0x1, 0x2):
                self._message(payload, now)
            elif opcode == 0x9:  # the server's keepalive ping
                self.send(0xA, payload)
            elif opcode == 0x8:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                if not self.closing:
                    reason = payload[2:].decode(errors="replace")
                    self.subs.lost[f"closed {code} {reason}".strip()] += 1
                self.closing = True
                self.transport.close()  # type: ignore[union-attr]
                return

    def _message(self, payload: bytes, now: float) -> None:
        import orjson

        subs = self.subs
        message = orjson.loads(payload)
        kind = message.get("type")
        if kind == "next" and not message["payload"].get("errors"):
            change = message["payload"]["data"]["emailStatusChanged"]
            k = f"{change['email']['id']}|{change['status']}"
            subs.receipts[k].append((self.index, now))
            if (self.index, k) not in subs.seen:
                subs.seen.add((self.index, k))
                subs.first[k] += 1
        elif kind == "connection_ack":
            self.send(0x1, self.messages[1].encode())
            self.subscribed.set_result(None)  # the server reads the subscribe in order
        elif kind == "ping":
            self.send(0x1, self.messages[2].encode())
        else:
            subs.other[f"{kind}: {str(message.get('payload'))[:200]}"] += 1

    def _fail(self, reason: str) -> None:
        if not self.subscribed.done():
            self.subscribed.set_exception(BenchError(reason))
        self.transport.close()  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.subscribed.done():
            self.subscribed.set_exception(BenchError(f"connection lost: {exc}"))
        elif not self.closing:
            self.subs.lost[f"connection lost: {exc}"] += 1
        if not self.closed.done():
            self.closed.set_result(None)


class _Subscribers:
    """Every connection of this client process and what each received."""

    def __init__(self) -> None:
        self.sockets: list[Any] = []
        self.readers: list[asyncio.Task[None]] = []
        self.live = 0
        self.failures: Counter[str] = Counter()
        self.lost: Counter[str] = Counter()  # connections that ended while measuring, by reason
        self.receipts: dict[str, list[tuple[int, float]]] = defaultdict(list)  # key -> (connection, monotonic)
        self.first: Counter[str] = Counter()  # key -> connections that got it at least once
        self.seen: set[tuple[int, str]] = set()
        self.other: Counter[str] = Counter()  # anything but an expected `next`


async def _client(conn: Connection, address: str, key: str, count: int, parallel: int, kind: str) -> None:
    import orjson
    import websockets

    subs = _Subscribers()
    uri = f"ws://{address}/graphql"
    init = orjson.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {key}"}}).decode()
    subscribe = orjson.dumps({"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIPTION}}).decode()
    pong = orjson.dumps({"type": "pong"}).decode()
    loads, monotonic = orjson.loads, time.monotonic

    async def read(index: int, ws: Any) -> None:
        receipts, first, seen, other = subs.receipts, subs.first, subs.seen, subs.other
        try:
            async for raw in ws:
                now = monotonic()
                message = loads(raw)
                kind = message.get("type")
                if kind == "next" and not message["payload"].get("errors"):
                    change = message["payload"]["data"]["emailStatusChanged"]
                    k = f"{change['email']['id']}|{change['status']}"
                    receipts[k].append((index, now))
                    if (index, k) not in seen:
                        seen.add((index, k))
                        first[k] += 1
                elif kind == "ping":
                    await ws.send(pong)
                else:
                    other[f"{kind}: {str(message.get('payload'))[:200]}"] += 1
        except websockets.ConnectionClosed as closed:
            subs.lost[
                f"closed {closed.rcvd.code if closed.rcvd else 'without a close frame'}"
                f" {closed.rcvd.reason if closed.rcvd else ''}".strip()
            ] += 1
        except Exception as error:  # noqa: BLE001 - reported, not hidden
            subs.lost[f"{type(error).__name__}: {error}"[:200]] += 1
        else:
            subs.lost["ended"] += 1

    async def open_raw(index: int) -> None:
        host, _, port = address.rpartition(":")
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await loop.create_connection(
                lambda: RawSubscriber(index, subs, address, init, subscribe, pong), host, int(port)
            )
            async with asyncio.timeout(120):
                await protocol.subscribed
        except Exception as error:  # noqa: BLE001
            subs.failures[f"connect: {type(error).__name__}: {error}"[:200]] += 1
            return
        subs.sockets.append(protocol)
        subs.live += 1

    async def open_one(index: int) -> None:
        if kind == "raw":
            await open_raw(index)
            return
        try:
            ws = await websockets.connect(
                uri,
                subprotocols=[PROTOCOL],  # type: ignore[list-item]
                open_timeout=120,
                close_timeout=10,
                ping_interval=None,
                compression="deflate" if kind == "deflate" else None,
                max_size=2**20,
            )
        except Exception as error:  # noqa: BLE001
            subs.failures[f"connect: {type(error).__name__}: {error}"[:200]] += 1
            return
        try:
            await ws.send(init)
            async with asyncio.timeout(120):
                ack = loads(await ws.recv())
            if ack.get("type") != "connection_ack":
                raise BenchError(f"expected connection_ack, got {ack}")
            await ws.send(subscribe)
        except Exception as error:  # noqa: BLE001
            subs.failures[f"init: {type(error).__name__}: {error}"[:200]] += 1
            await ws.close()
            return
        subs.sockets.append(ws)
        subs.live += 1
        subs.readers.append(asyncio.create_task(read(index, ws)))

    started = monotonic()
    pending: set[asyncio.Task[None]] = set()
    for index in range(count):  # at most `parallel` handshakes in flight: the accept queue stays short
        if len(pending) >= parallel:
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        pending.add(asyncio.create_task(open_one(index)))
    if pending:
        await asyncio.wait(pending)
    conn.send(("connected", subs.live, dict(subs.failures), monotonic() - started))

    while True:
        command, argument = await asyncio.to_thread(conn.recv)
        if command == "wait":  # until every live connection has every key, or the deadline
            keys, deadline = argument
            while monotonic() < deadline and any(subs.first[k] < subs.live for k in keys):  # noqa: ASYNC110
                await asyncio.sleep(0.01)  # counters polled: 10 ms is plenty
            conn.send(("waited", all(subs.first[k] >= subs.live for k in keys)))
        elif command == "collect":  # (first receipt times per key, duplicates per key) for these keys
            keys = argument
            result: dict[str, tuple[list[float], int, int]] = {}
            for k in keys:
                firsts: dict[int, float] = {}
                duplicates = 0
                for index, at in subs.receipts.get(k, ()):
                    if index in firsts:
                        duplicates += 1
                    else:
                        firsts[index] = at
                result[k] = (list(firsts.values()), duplicates, subs.live - len(firsts))
            unexpected = {k: len(v) for k, v in subs.receipts.items() if k not in keys}
            conn.send(("collected", result, unexpected, dict(subs.other), dict(subs.lost), subs.live))
        elif command == "close":
            closing = time.monotonic()
            for task in subs.readers:
                task.cancel()
            if kind == "raw":
                for protocol in subs.sockets:
                    protocol.close()
                await asyncio.gather(*(p.closed for p in subs.sockets), return_exceptions=True)
                conn.send(("closed", time.monotonic() - closing))
                return
            for start in range(0, len(subs.sockets), 500):
                await asyncio.gather(
                    *(ws.close() for ws in subs.sockets[start : start + 500]),
                    return_exceptions=True,
                )
            conn.send(("closed", time.monotonic() - closing))
            return


class Clients:
    """The client processes, each with its share of the subscriptions."""

    def __init__(self, processes: int, address: str, key: str, total: int, parallel: int, kind: str) -> None:
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: nothing inherited from this one
        shares = [total // processes + (1 if n < total % processes else 0) for n in range(processes)]
        self.pipes: list[Connection] = []
        self.processes: list[Any] = []
        for share in shares:
            parent, child = context.Pipe()
            process = context.Process(
                target=client_process,
                args=(child, address, key, share, parallel, kind),
                daemon=True,
            )
            process.start()
            child.close()
            self.pipes.append(parent)
            self.processes.append(process)

    def receive(self, expected: str, timeout: float) -> list[tuple[Any, ...]]:
        answers = []
        for pipe in self.pipes:
            if not pipe.poll(timeout):
                raise BenchError(f"a client process did not answer {expected!r} within {timeout:.0f} s")
            answer = pipe.recv()
            if answer[0] != expected:
                raise BenchError(f"a client process answered {answer!r}, expected {expected!r}")
            answers.append(answer)
        return answers

    def send(self, command: str, argument: Any = None) -> None:
        for pipe in self.pipes:
            pipe.send((command, argument))

    def cpu(self) -> float:
        return sum(proc_cpu(p.pid) for p in self.processes)

    def stop(self) -> None:
        for process in self.processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
                process.join()


# --- one size ---------------------------------------------------------------------------


@dataclass(slots=True)
class RunResult:
    subscribers: int
    connected: int = 0
    connect_seconds: float = 0.0
    rss_before_kib: int = 0
    rss_idle_kib: int = 0
    rss_peak_kib: int = 0
    rss_delivered_kib: int = 0
    rss_after_close_kib: int = 0
    latencies: list[float] = field(default_factory=list)  # from the webhook's answer
    from_sent: list[float] = field(default_factory=list)  # from the webhook's request
    answers: list[float] = field(default_factory=list)  # webhook request durations
    deliveries: int = 0
    elapsed: float = 0.0
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    machine_cpu: float = 0.0
    cpu_wall: float = 0.0  # the wall time the CPU figures cover
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def kib_per_subscription(self) -> float:
        return (self.rss_idle_kib - self.rss_before_kib) / max(1, self.connected)

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 99) if self.latencies else math.inf


def run_size(n: int, args: argparse.Namespace) -> RunResult:
    import httpx

    result = RunResult(n)
    processes = args.client_processes or (1 if n <= 15_000 else 2)
    broker = "memory://" if args.broker == "memory" else REDIS_URL
    print(
        f"\n== {n:,} subscribers: {args.database}, {args.broker} broker, "
        f"{processes} client process(es), "
        + (
            "raw byte-level clients; "
            if args.client == "raw"
            else f"websockets clients, permessage-deflate {'offered' if args.compression == 'deflate' else 'off'}; "
        )
        + f"{args.changes} changes at {args.rate:g}/s ==",
        flush=True,
    )
    with (
        tempfile.TemporaryDirectory(prefix="gateway-bench-live-") as tmp,
        databases.fresh_database(args.database, Path(tmp), f"gateway_bench_live_{os.getpid()}") as db,
    ):
        workdir = Path(tmp)
        private_key, public_key = key_pair()
        settings = {"GATEWAY_SENDGRID_VERIFICATION_KEY": public_key, "GATEWAY_BROKER_URL": broker}
        env = gateway_env(db.url, workdir / "data", {**settings, **settings_from_args(args.set, "--set")})
        started = time.monotonic()
        key = create_key(env, workdir)
        port = free_port()
        instruments = workdir / "instruments"  # the instrumented server's files
        instruments.mkdir()
        instrumented = args.tracemalloc or args.gc_stats or bool(args.what_if)
        command = server_command(
            port, instruments if instrumented else None, args.tracemalloc, args.gc_stats, args.what_if
        )
        server = Server("gateway serve", command, env, port, workdir / "server.log", stop_timeout=30)
        for patch in args.what_if:
            print(f"  WHAT-IF (not the product as it is): {patch}: {WHAT_IF[patch]}")
        clients: Clients | None = None
        try:
            server.wait_ready("/readyz", timeout=60)
            emails = register_emails(server.url, key, args.changes + 1)
            warmup_email, emails = emails[0], emails[1:]
            changes = plan_changes(emails, args.changes)
            warmup = Change(warmup_email[0], warmup_email[1], "delivered", "DELIVERED", int(time.time()) - 1800)
            print(
                f"  setup: migrate, key, server up on :{port}, {len(emails) + 1} e-mails "
                f"registered in {time.monotonic() - started:.1f} s; server pid {server.pid}",
                flush=True,
            )

            # One subscription opened and closed first, so that code loaded on first use
            # (websocket protocol, GraphQL subscription machinery) is in the baseline.
            primer = Clients(1, f"127.0.0.1:{port}", key, 1, 1, client_kind(args))
            primer.receive("connected", 60)
            primer.send("close")
            primer.receive("closed", 60)
            primer.stop()
            time.sleep(args.settle)
            result.rss_before_kib = rss_kib(server)
            before_snapshot = take_snapshot(server, instruments, 1) if args.tracemalloc else None

            clients = Clients(processes, f"127.0.0.1:{port}", key, n, args.parallel, client_kind(args))
            connecting = time.monotonic()
            answers = clients.receive("connected", 600)
            result.connected = sum(a[1] for a in answers)
            result.connect_seconds = time.monotonic() - connecting
            failures: Counter[str] = Counter()
            for a in answers:
                failures.update(a[2])
            print(
                f"  connected, acknowledged and subscribed: {result.connected:,} of {n:,} in "
                f"{result.connect_seconds:.1f} s "
                f"({result.connected / result.connect_seconds:,.0f}/s)",
                flush=True,
            )
            if failures:
                result.problems.append(f"{n - result.connected} subscriptions could not be opened")
                for reason, count in failures.most_common(5):
                    print(f"    {count:,} failed: {reason}")
            time.sleep(args.settle)
            result.rss_idle_kib = rss_kib(server)
            kib = result.kib_per_subscription
            print(
                f"  server RSS: {result.rss_before_kib / 1024:,.1f} MiB before, "
                f"{result.rss_idle_kib / 1024:,.1f} MiB with {result.connected:,} idle "
                f"subscriptions ({args.settle:g} s after the last) = "
                f"{kib:,.1f} KiB per subscription (goal < {MEMORY_GOAL_KIB:g} KiB: "
                f"{'met' if kib < MEMORY_GOAL_KIB else 'MISSED'})",
                flush=True,
            )
            if before_snapshot is not None:
                print(
                    "  (--tracemalloc: the server runs with tracemalloc on, so its RSS and speed are not the product's)"
                )
                idle_snapshot = take_snapshot(server, instruments, 2)
                report_tracemalloc(
                    before_snapshot,
                    idle_snapshot,
                    max(1, result.connected),
                    "idle subscriptions",
                )

            limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
            with (
                httpx.Client(base_url=server.url, timeout=600, limits=limits) as http,
                ThreadPoolExecutor(max_workers=64, thread_name_prefix="webhook") as pool,
            ):
                # A first change that every subscriber must get: proves each subscription is
                # live on the server before anything is timed (subscribe has no ack).
                posted = post_change(http, private_key, warmup)
                clients.send("wait", ([warmup.key], time.monotonic() + 120))
                complete = all(a[1] for a in clients.receive("waited", 180))
                print(
                    f"  warm-up change reached {'every' if complete else 'NOT every'} subscriber "
                    f"{time.monotonic() - posted.answered:.2f} s after its answer",
                    flush=True,
                )
                if not complete:
                    result.problems.append("the warm-up change did not reach every subscriber within 120 s")

                spy = PySpy(args.py_spy, server.pid, workdir / "py-spy.txt", PY_SPY_RATE) if args.py_spy else None
                watch = WriterWatch(db.name) if db.name is not None else None
                gc_before = gc_stats(server, instruments, 1) if args.gc_stats else None
                server_cpu, client_cpu, all_cpu = proc_cpu(server.pid), clients.cpu(), machine_cpu()
                # Open loop: each webhook leaves at its time, whether or not the earlier ones
                # were answered (a provider does not wait for a slow gateway either).
                futures = []
                first_sent = time.monotonic()
                for number, change in enumerate(changes):
                    delay = first_sent + number / args.rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    futures.append(pool.submit(post_change, http, private_key, change))
                posting = time.monotonic() - first_sent
                posts: list[Posted] = [f.result() for f in futures]
            keys = [c.key for c in changes]
            clients.send("wait", (keys, time.monotonic() + args.patience))
            complete = all(a[1] for a in clients.receive("waited", args.patience + 60))
            result.cpu_wall = time.monotonic() - first_sent
            result.server_cpu = proc_cpu(server.pid) - server_cpu
            result.client_cpu = clients.cpu() - client_cpu
            result.machine_cpu = machine_cpu() - all_cpu
            if spy is not None:
                report_py_spy(spy)
            if watch is not None:
                result.notes.append(watch.stop())
            gc_after = gc_stats(server, instruments, 2) if args.gc_stats else None
            time.sleep(1.0)  # anything doubled would come now
            clients.send("collect", [*keys, warmup.key])
            collected = clients.receive("collected", 120)
            result.rss_peak_kib = proc_status_kib(server.pid, "VmHWM")
            result.rss_delivered_kib = rss_kib(server)

            answered = {p.change.key: p.answered for p in posts}
            sent_at = {p.change.key: p.sent for p in posts}
            result.answers = sorted(p.answered - p.sent for p in posts)
            last = first_sent
            missing = duplicates = 0
            unexpected: Counter[str] = Counter()
            others: Counter[str] = Counter()
            lost: Counter[str] = Counter()
            for _, per_key, extra, other, closed, _live in collected:
                unexpected.update(extra)
                others.update(other)
                lost.update(closed)
                for k, (times, doubled, absent) in per_key.items():
                    duplicates += doubled
                    missing += absent
                    if k == warmup.key:  # checked for loss and doubles, not timed
                        continue
                    result.deliveries += len(times) + doubled
                    if times:
                        last = max(last, max(times))
                    result.latencies.extend(t - answered[k] for t in times)
                    result.from_sent.extend(t - sent_at[k] for t in times)
            result.latencies.sort()
            result.from_sent.sort()
            result.elapsed = last - first_sent
            early = sum(1 for x in result.latencies if x < 0)
            print(
                f"  {len(posts)} webhooks sent in {posting:.1f} s "
                f"({len(posts) / max(posting, 1e-9):.1f}/s, open loop); answered in "
                f"p50 {_ms(percentile(result.answers, 50))}, max {_ms(result.answers[-1])}",
                flush=True,
            )
            if not complete:
                print(
                    f"  NOT every change reached every subscriber within {args.patience:g} s "
                    "of the last webhook's answer"
                )
            if missing:
                result.problems.append(f"{missing:,} deliveries missing (of {(len(keys) + 1) * result.connected:,})")
            if duplicates:
                result.problems.append(f"{duplicates:,} deliveries received twice or more")
            # The registrations' own changes (status SENT) were committed before anybody
            # subscribed: "live from now" says they are not news. Noted, not a loss.
            registered = {e for e, _ in emails} | {warmup.email_id}
            old_news = sum(c for k, c in unexpected.items() if k.split("|")[0] in registered and k.endswith("|SENT"))
            if old_news:
                result.notes.append(
                    f"{old_news:,} deliveries of the registrations' SENT changes, committed "
                    f"before the clients subscribed ({old_news / max(1, result.connected):.1f} "
                    "per subscriber): a subscription without `since` should start live from now"
                )
            if sum(unexpected.values()) > old_news:
                result.problems.append(
                    f"{sum(unexpected.values()) - old_news:,} changes received that were not sent: "
                    f"{dict(unexpected.most_common(3))}"
                )
            if others:
                result.problems.append(f"{sum(others.values()):,} other messages: {dict(others.most_common(3))}")
            if lost:
                result.problems.append(f"connections ended while measuring: {dict(lost.most_common(3))}")
            print_latency(result, early)
            grown = result.rss_delivered_kib - result.rss_idle_kib
            print(
                "  server RSS after the deliveries, sockets still open: "
                f"{result.rss_delivered_kib / 1024:,.1f} MiB ({grown / 1024:+,.1f} MiB = "
                f"{grown * 1024 / max(1, result.deliveries):+,.0f} bytes per message delivered)",
                flush=True,
            )
            if gc_before is not None and gc_after is not None:
                report_gc(gc_before, gc_after, result.cpu_wall)
            if before_snapshot is not None:
                delivered_snapshot = take_snapshot(server, instruments, 3)
                report_tracemalloc(
                    idle_snapshot,
                    delivered_snapshot,
                    max(1, result.deliveries),
                    f"deliveries (kept after the {len(keys)} changes, sockets still open)",
                    top=12,
                )
            clients.send("close")
            closing = clients.receive("closed", 300)
            clients.stop()
            clients = None
            time.sleep(args.settle)
            result.rss_after_close_kib = rss_kib(server)
            if before_snapshot is not None:
                closed_snapshot = take_snapshot(server, instruments, 4)
                report_tracemalloc(
                    before_snapshot,
                    closed_snapshot,
                    max(1, result.connected),
                    "subscriptions, all closed again (what a closed subscription leaves)",
                    top=12,
                )
            print(
                f"  closed every socket in {max(a[1] for a in closing):.1f} s; server RSS "
                f"{result.rss_after_close_kib / 1024:,.1f} MiB after they closed "
                f"(peak {result.rss_peak_kib / 1024:,.1f} MiB)",
                flush=True,
            )
        except BaseException:
            server.stop()
            print(f"  server log (last lines):\n{server.tail()}", file=sys.stderr)
            raise
        finally:
            if clients is not None:
                for process in clients.processes:
                    process.kill()
                clients.stop()
            stopped = server.stop()
        print(f"  server stopped {stopped:.1f} s after SIGTERM", flush=True)
        for note in result.notes:
            print(f"  note: {note}")
        print(
            "  check: "
            + (
                "OK: every subscriber got every change exactly once"
                if not result.problems
                else "FAILED: " + "; ".join(result.problems)
            ),
            flush=True,
        )
    return result


def print_latency(result: RunResult, early: int) -> None:
    lat = result.latencies
    goal = GOALS.get(result.subscribers)
    if not lat:
        print("  no deliveries")
        return
    verdict = f" (goal p99 < {_ms(goal)}: {'met' if lat and percentile(lat, 99) < goal else 'MISSED'})" if goal else ""
    print(
        f"  delivery latency, webhook answer -> client receipt, {len(lat):,} deliveries: "
        f"p50 {_ms(percentile(lat, 50))}, p90 {_ms(percentile(lat, 90))}, "
        f"p99 {_ms(percentile(lat, 99))}, max {_ms(lat[-1])}{verdict}"
    )
    if early:
        print(
            f"    ({early:,} deliveries were read before the webhook's answer: negative latencies, counted as they are)"
        )
    sent = result.from_sent
    print(
        "  the same from the webhook's request (what the provider waits on too): "
        f"p50 {_ms(percentile(sent, 50))}, p90 {_ms(percentile(sent, 90))}, "
        f"p99 {_ms(percentile(sent, 99))}, max {_ms(sent[-1])}"
    )
    rate = result.deliveries / result.elapsed if result.elapsed > 0 else 0.0
    print(
        f"  delivered: {result.deliveries:,} messages in {result.elapsed:.2f} s (first webhook "
        f"sent -> last receipt) = {rate:,.0f} messages/s = "
        f"{rate / max(1, result.connected):.2f} changes/s to each subscriber"
    )
    wall = result.cpu_wall
    rest = result.machine_cpu - result.server_cpu - result.client_cpu
    print(
        f"  CPU/wall from the first webhook until every delivery was in ({wall:.1f} s): "
        f"server {result.server_cpu / wall:.0%}, client process(es) "
        f"{result.client_cpu / wall:.0%}, everything else (PostgreSQL, and anybody else's "
        f"processes) {rest / wall:.0%} ({os.cpu_count()} cores = {os.cpu_count() or 1}00%); "
        "server CPU per message delivered: "
        f"{result.server_cpu / max(1, result.deliveries) * 1e6:,.0f} µs",
        flush=True,
    )


def print_summary(results: Sequence[RunResult]) -> None:
    print("\n== summary ==")
    header = (
        f"{'subscribers':>11} | {'p50':>9} | {'p90':>9} | {'p99':>9} | {'max':>9} | "
        f"{'p99 goal':>16} | {'msgs/s':>7} | {'KiB/sub (goal)':>19} | deliveries"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        lat = r.latencies
        goal = GOALS.get(r.subscribers)
        cells = [_ms(percentile(lat, q)) if lat else "-" for q in (50, 90, 99)] + [_ms(lat[-1]) if lat else "-"]
        goal_cell = (("met < " if r.p99 < goal else "MISSED < ") + _ms(goal)) if goal else "-"
        rate = r.deliveries / r.elapsed if r.elapsed else 0
        kib = r.kib_per_subscription
        kib_cell = f"{kib:.1f} ({'met' if kib < MEMORY_GOAL_KIB else 'MISSED'} < {MEMORY_GOAL_KIB:g})"
        print(
            f"{r.subscribers:>11,} | "
            + " | ".join(f"{c:>9}" for c in cells)
            + f" | {goal_cell:>16} | {rate:>7,.0f} | {kib_cell:>19} | "
            + ("all once" if not r.problems else "FAILED")
        )
    print(
        "latency: from each webhook's HTTP answer to each client's receipt; msgs/s: messages "
        "received / (first webhook -> last receipt); KiB/sub: server RSS per idle subscription"
    )


# --- command line ---------------------------------------------------------------------


def _sizes(value: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in value.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of whole numbers, got {value!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("every size must be at least 1")
    return sizes


def _patches(value: str) -> list[str]:
    patches = [p.strip() for p in value.split(",") if p.strip()]
    unknown = [p for p in patches if p not in WHAT_IF]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown change(s) {unknown}; known: {', '.join(WHAT_IF)}")
    return patches


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.live",
        description="Live subscriptions against one `gateway serve`: webhook-to-subscriber "
        "latency, delivery rate and server memory per idle subscription.",
    )
    parser.add_argument(
        "--subscribers",
        type=_sizes,
        default=[1_000, 10_000],
        help="comma-separated sizes, each a separate run with a fresh server and database (default 1000,10000)",
    )
    parser.add_argument("--changes", type=int, default=50, help="status changes posted per run (default 50)")
    parser.add_argument("--rate", type=float, default=5.0, help="webhooks per second (default 5)")
    parser.add_argument(
        "--database",
        choices=["postgresql", "sqlite"],
        default="postgresql",
        help=f"postgresql: a fresh database on {databases.PG_HOST}:{databases.PG_PORT} (user "
        f"{databases.PG_USER}), dropped afterwards; sqlite: a temporary file (default postgresql)",
    )
    parser.add_argument(
        "--broker",
        choices=["memory", "redis"],
        default="memory",
        help=f"memory:// (default) or {REDIS_URL}",
    )
    parser.add_argument(
        "--client",
        choices=["raw", "websockets"],
        default="raw",
        help="raw: a byte-level client of a few microseconds per message (default); websockets: "
        "the websockets library, tens of microseconds per message (on 2 cores the clients then "
        "compete with the server)",
    )
    parser.add_argument(
        "--compression",
        choices=["deflate", "none"],
        default="deflate",
        help="whether the websockets clients offer permessage-deflate, as browsers do (default "
        "deflate; the gateway declines it)",
    )
    parser.add_argument(
        "--client-processes",
        type=int,
        default=0,
        help="client processes sharing the sockets (default: 1 up to 15,000 sockets, else 2)",
    )
    parser.add_argument(
        "--parallel",
        type=int,
        default=200,
        help="handshakes in flight per client process while connecting (default 200)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=3.0,
        help="seconds of quiet before reading the server's RSS (default 3)",
    )
    parser.add_argument(
        "--patience",
        type=float,
        default=300.0,
        help="seconds to wait, once every webhook is answered, for every delivery; what has not "
        "arrived by then counts as missing (default 300)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="GATEWAY_NAME=VALUE",
        help="an extra server setting, e.g. GATEWAY_FEED_POLL_SECONDS=0.5 (repeatable)",
    )
    parser.add_argument(
        "--py-spy",
        metavar="BINARY",
        help="sample the server with this py-spy while the changes are delivered, and summarize",
    )
    parser.add_argument(
        "--gc-stats",
        action="store_true",
        help="run the server through a wrapper that times the garbage collector's passes while the "
        "changes are delivered",
    )
    parser.add_argument(
        "--what-if",
        type=_patches,
        default=[],
        metavar="CHANGE[,CHANGE]",
        help="measure changes proposed for gateway/, monkeypatched into the server process only: "
        + "; ".join(f"{k}: {v}" for k, v in WHAT_IF.items()),
    )
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="run the server under tracemalloc and show where the idle subscriptions' memory goes "
        "(slows the server and inflates its RSS: not for the figures)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [_INSTRUMENTED_SERVE]:
        serve_instrumented(*argv[1:6])
        return 0
    args = build_parser().parse_args(argv)
    if args.changes < 1 or args.rate <= 0:
        raise SystemExit("--changes must be at least 1 and --rate above 0")
    results = []
    for n in args.subscribers:
        results.append(run_size(n, args))
    print_summary(results)
    return 1 if any(r.problems for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
