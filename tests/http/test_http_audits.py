"""graphql-http's GraphQL-over-HTTP server audits, run by Node against a real gateway.

The audits are the npm package `graphql-http` (its `serverAudits`), pinned in
tests/node/package-lock.json and installed here with `npm ci`. Every audit must
pass, the SHOULDs included: a warning fails the test. Without node or npm the
test is skipped with the reason, except under CI=true, where it fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvicorn
from conftest import IN_CI, make_settings
from factories import make_tenant
from waiting import eventually

from gateway.app import create_app

NODE_DIR = Path(__file__).resolve().parent.parent / "node"
PATIENCE = 60.0  # seconds: generous on a loaded 2-core machine


def _missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the audits are required)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def audit_tools() -> str:
    """The node executable, once `npm ci` has installed the pinned audits."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _missing("node and npm are needed for graphql-http's audits")
    installed = subprocess.run(  # noqa: S603  (fixed arguments)
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],  # type: ignore[list-item]
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if installed.returncode != 0:
        _missing(f"npm ci failed in {NODE_DIR}: {installed.stderr.strip()[-500:]}")
    return node  # type: ignore[return-value]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def _serving(app: object) -> AsyncIterator[str]:
    """uvicorn on a free loopback port in this event loop; yields the GraphQL URL."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))  # type: ignore[arg-type]
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started or task.done(), what="uvicorn started", within=PATIENCE)
        if task.done():
            task.result()  # the server's own error, if it raised one
            raise RuntimeError("uvicorn stopped before it started")
        yield f"http://127.0.0.1:{port}/graphql"
    finally:
        server.should_exit = True
        await task


@pytest.mark.parametrize("fast_path", [False, True])
async def test_every_graphql_over_http_audit_passes(audit_tools, backend, tmp_path, session_factory, fast_path):  # type: ignore[no-untyped-def]
    # given: a gateway on a real port, and a key for the audits' requests
    tenant = await make_tenant(session_factory)
    app = create_app(make_settings(backend, tmp_path, fast_path=fast_path))
    async with _serving(app) as url:
        # when
        process = await asyncio.create_subprocess_exec(
            audit_tools,
            "audit.mjs",
            url,
            cwd=NODE_DIR,
            env={"PATH": str(Path(audit_tools).parent), "GATEWAY_AUDIT_KEY": tenant.key},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(PATIENCE):
            out, err = await process.communicate()
    # then
    assert process.returncode == 0, err.decode()
    results = json.loads(out)
    assert len(results) > 50  # the whole list ran
    failed = [f"{r['id']} {r['status']}: {r['name']} ({r['reason']})" for r in results if r["status"] != "ok"]
    assert failed == []
