"""`gateway serve --workers N`: several processes on one port, one stream of changes.

The real command against real servers: PostgreSQL holds the change log, Redis carries
the announcements between the worker processes. The kernel hands each new connection
to one of the workers; sockets are opened until both workers hold subscribers, and the
test finds which worker holds which socket from /proc (the gateway exposes nothing for it).

These tests run once, not once per backend: the command gets a database of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import PG_HOST, PG_PORT, _pg_admin, need_server
from live_helpers import CHANGES, PATIENCE, Client, free_port, record_via_api, register_via_api

GATEWAY = [sys.executable, "-m", "gateway.cli"]
MIN_SOCKETS = 6  # then more, one at a time, until both workers hold one
MAX_SOCKETS = 40


def _env(tmp_path: Path, **variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_DATA_DIR"] = str(tmp_path / "data")
    env.update(variables)
    return env


def _descendants(pid: int) -> set[int]:
    """Every process below `pid` (Linux /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                # The command name is in parentheses and may hold spaces: split after it.
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
    return inodes


def _tcp_sockets(port: int) -> dict[int, tuple[int, str]]:
    """inode -> (remote port, state) of the IPv4 sockets whose local port is `port`."""
    sockets = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, inode = fields[1], fields[2], fields[3], int(fields[9])
        if int(local.split(":")[1], 16) == port:
            sockets[inode] = (int(remote.split(":")[1], 16), state)
    return sockets


_LISTEN, _ESTABLISHED = "0A", "01"


def _workers(server: int, port: int) -> dict[int, set[int]]:
    """worker pid -> the client ports of the connections it holds.

    The workers are the server's descendants that hold the listening socket.
    """
    sockets = _tcp_sockets(port)
    workers: dict[int, set[int]] = {}
    for pid in _descendants(server):
        held = [sockets[inode] for inode in _socket_inodes(pid) if inode in sockets]
        if any(state == _LISTEN for _, state in held):
            workers[pid] = {remote for remote, state in held if state == _ESTABLISHED}
    return workers


async def _ready(port: int, server: subprocess.Popen[bytes], log: Path) -> None:
    async with httpx.AsyncClient() as http, asyncio.timeout(PATIENCE * 2):
        while True:
            assert server.poll() is None, log.read_text()
            with contextlib.suppress(httpx.TransportError):
                if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)


async def _collect(client: Client, into: list[dict[str, Any]]) -> None:
    """Keep every change the subscription sends, until cancelled."""
    while True:
        into.append((await client.next_data("1", timeout=3600))["emailStatusChanged"])


async def _until(condition: Any, timeout: float) -> bool:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.05)
            return True
    return False


def test_several_workers_need_a_broker_that_crosses_processes(tmp_path: Path) -> None:
    # given: the default, in-process broker
    env = _env(tmp_path)
    # when
    done = subprocess.run(  # noqa: S603
        [*GATEWAY, "serve", "--workers", "2", "--port", str(free_port())],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # then: one clear line, before touching any database
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        "gateway: --workers 2 needs GATEWAY_BROKER_URL=redis://... "
        "(the in-process memory:// broker would not carry changes between the workers)"
    ]
    assert not (tmp_path / "data").exists()


async def test_two_workers_deliver_every_change_once_to_every_subscriber(tmp_path: Path) -> None:
    # given: `gateway serve --workers 2` on PostgreSQL and Redis, and an API key
    need_server("PostgreSQL", PG_HOST, PG_PORT)
    need_server("Redis", "127.0.0.1", 6379)
    database = f"gateway_workers_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    await _pg_admin(f'CREATE DATABASE "{database}"')
    env = _env(
        tmp_path,
        GATEWAY_DATABASE_URL=f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{database}",
        GATEWAY_SECRET_KEY="workers-test-secret-key-0123456789-abcdef",
        GATEWAY_BROKER_URL="redis://127.0.0.1:6379/0",
        # Other test processes share this Redis: their announcements stay apart.
        GATEWAY_BROKER_CHANNEL_PREFIX=f"workers-{uuid.uuid4().hex[:10]}",
        GATEWAY_PURGE_INTERVAL_SECONDS="0",
        GATEWAY_FEED_POLL_SECONDS="30",  # so that only the broker can deliver within the test
    )
    port = free_port()
    address = f"127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    server = None
    try:
        created = subprocess.run(  # noqa: S603
            [*GATEWAY, "create-api-key", "--tenant", "Workers"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        key = created.stdout.strip().splitlines()[-1]
        with log.open("wb") as output:
            server = subprocess.Popen(  # noqa: S603
                [*GATEWAY, "serve", "--workers", "2", "--port", str(port)],
                env=env,
                cwd=tmp_path,
                stdout=output,
                stderr=output,
            )
        await _ready(port, server, log)
        async with contextlib.AsyncExitStack() as stack:
            clients: list[Client] = []
            while len(clients) < MAX_SOCKETS:
                client = await stack.enter_async_context(Client.connect(address, key))
                await client.subscribe("1", CHANGES)
                clients.append(client)
                workers = _workers(server.pid, port)
                if len(clients) >= MIN_SOCKETS and all(workers.values()):
                    break
            assert len(workers) == 2, workers
            assert all(workers.values()), f"one worker got none of {len(clients)} sockets: {workers}"
            received: list[list[dict[str, Any]]] = [[] for _ in clients]
            readers = [asyncio.create_task(_collect(c, into)) for c, into in zip(clients, received, strict=True)]
            try:
                # Every subscription is live once a marker committed after it reaches it.
                markers: set[str] = set()
                for n in range(20):
                    markers.add(await register_via_api(address, key, f"marker-{n}"))
                    if await _until(
                        lambda: all(any(c["email"]["id"] in markers for c in got) for got in received), timeout=1.0
                    ):
                        break
                else:
                    pytest.fail("some subscriptions never went live")

                # when: changes made over HTTP (each request a new connection, which either worker may take)
                expected: list[tuple[str, str]] = []
                for n in range(3):
                    email_id = await register_via_api(address, key, f"worker-{n}", providerMessageId=f"worker-msg-{n}")
                    expected.append((email_id, "SENT"))
                    for status, moment in (("DELIVERED", "2026-11-01T10:00:00Z"), ("OPENED", "2026-11-01T10:05:00Z")):
                        await record_via_api(address, key, email_id, status, f"worker-{n}-{status}", moment)
                        expected.append((email_id, status))
                ids = {email_id for email_id, _ in expected}

                def changes(got: list[dict[str, Any]]) -> list[tuple[str, str]]:
                    return [(c["email"]["id"], c["status"]) for c in got if c["email"]["id"] in ids]

                await _until(lambda: all(len(changes(got)) >= len(expected) for got in received), PATIENCE)
                await asyncio.sleep(1.0)  # room for a duplicate to show up
            finally:
                for reader in readers:
                    reader.cancel()
                ended = await asyncio.gather(*readers, return_exceptions=True)
            failed = [e for e in ended if not isinstance(e, asyncio.CancelledError)]
            assert failed == [], failed  # a reader stopped early: an error frame, a closed socket
        # then: each subscriber, whichever worker holds it, got each change once
        for got in received:
            assert Counter(changes(got)) == Counter(expected), (workers, got)
    except BaseException:
        print(log.read_text() if log.exists() else "the server never started")  # noqa: T201  (shown on failure)
        raise
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=PATIENCE)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        await _pg_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
