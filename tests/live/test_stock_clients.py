"""The real graphql-ws client in Node (tests/node/live.mjs, the README's client) across a gateway restart.

The gateway runs as its own process and is killed; while it is down, this process
writes changes to the database; it starts again on the same port. Every change
must reach the client, which reconnects by itself with its first variables.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from factories import make_tenant, register
from live_helpers import PATIENCE, free_port, register_via_api

from gateway.ids import encode_id

NODE_DIR = Path(__file__).resolve().parent.parent / "node"
GATEWAY = [sys.executable, "-m", "gateway.cli"]


@pytest.fixture(scope="session")
def node() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed for the stock clients")
    installed = subprocess.run(  # noqa: S603  (fixed arguments)
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],  # type: ignore[list-item]
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if installed.returncode != 0:
        pytest.skip(f"npm ci failed in {NODE_DIR}: {installed.stderr.strip()[-500:]}")
    return node  # type: ignore[return-value]


async def _ready(port: int) -> None:
    async with httpx.AsyncClient() as http, asyncio.timeout(PATIENCE * 2):
        while True:
            try:
                if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)


class Lines:
    """The client's JSON lines, read as they come."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.got: list[dict[str, Any]] = []

    async def until(self, predicate: Any) -> None:
        async with asyncio.timeout(PATIENCE * 2):
            while not predicate(self.got):
                line = await self.process.stdout.readline()  # type: ignore[union-attr]
                assert line, f"the client ended: {self.got}"
                self.got.append(json.loads(line))


async def test_graphql_ws_loses_nothing_across_a_gateway_restart(node, tmp_path, settings, session_factory):  # type: ignore[no-untyped-def]
    # given: a gateway process, and the README's client subscribed to it
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")},
        "GATEWAY_DATABASE_URL": settings.database_url,
        "GATEWAY_DATA_DIR": str(tmp_path / "data"),
        "GATEWAY_SECRET_KEY": settings.secret_key.get_secret_value(),
        "GATEWAY_PURGE_INTERVAL_SECONDS": "0",
        "GATEWAY_FEED_POLL_SECONDS": "0.2",
    }
    factory = session_factory
    tenant = await make_tenant(factory)
    port = free_port()
    log = (tmp_path / "gateway.log").open("wb")

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen([*GATEWAY, "serve", "--port", str(port)], env=env, cwd=tmp_path, stdout=log, stderr=log)  # noqa: S603

    gateway = start()
    client = None
    try:
        await _ready(port)
        address = f"127.0.0.1:{port}"
        client = await asyncio.create_subprocess_exec(
            node,
            str(NODE_DIR / "live.mjs"),
            f"ws://{address}/graphql",
            env={**os.environ, "GATEWAY_KEY": tenant.key},
            stdout=asyncio.subprocess.PIPE,
        )
        lines = Lines(client)
        await lines.until(lambda got: any(g.get("ready") for g in got))
        marker = await register_via_api(address, tenant.key, "marker")
        await lines.until(lambda got: any(g.get("email") == marker for g in got))
        # when: the gateway dies, changes are written while it is down, and it comes back
        gateway.send_signal(signal.SIGKILL)
        gateway.wait(timeout=PATIENCE)
        missed = [await register(factory, tenant, n=n) for n in range(3)]
        gateway = start()
        await _ready(port)
        after = await register_via_api(address, tenant.key, "after")
        # then: every change arrives (duplicates are dropped by their cursor in the client)
        wanted = {encode_id("Email", e.id) for e in missed} | {after}
        await lines.until(lambda got: wanted <= {g.get("email") for g in got})
        assert not [g for g in lines.got if "error" in g]
    finally:
        if client is not None and client.returncode is None:
            client.kill()
            await client.wait()
        gateway.kill()
        gateway.wait(timeout=PATIENCE)
        log.close()


@pytest.mark.parametrize("transport", ["http", "ws"])
async def test_apollo_client_reads_the_subscription_over_http_and_websocket(
    node, backend, tmp_path, session_factory, transport
):  # type: ignore[no-untyped-def]
    from conftest import make_settings
    from live_helpers import listening, serving

    # given: Apollo Client subscribed over plain HTTP (multipart) or with GraphQLWsLink
    tenant = await make_tenant(session_factory)
    async with serving(make_settings(backend, tmp_path)) as (address, app):
        client = await asyncio.create_subprocess_exec(
            node,
            str(NODE_DIR / "apollo-subscription.mjs"),
            f"http://{address}/graphql",
            transport,
            env={**os.environ, "GATEWAY_KEY": tenant.key},
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            lines = Lines(client)
            await listening(app, 1)
            # when
            email_id = await register_via_api(address, tenant.key, "apollo-1")
            # then
            await lines.until(lambda got: any(g.get("email") == email_id for g in got))
            assert [g["status"] for g in lines.got if g.get("email") == email_id] == ["SENT"]
        finally:
            client.kill()
            await client.wait()
