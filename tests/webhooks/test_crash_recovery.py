"""A webhook burst across a gateway kill -9 and a PostgreSQL crash: nothing lost, nothing twice.

A provider retries every event until it gets a 2xx. The gateway answers 2xx
only after the commit, so whatever dies when (the gateway mid-request, the
database mid-transaction, the database still starting up), every event ends up
recorded exactly once, and the statuses are what the events say. The database
is a private PostgreSQL cluster of the test's own, on its own port, so it can be
crashed without disturbing the rest of the suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from glob import glob
from pathlib import Path

import asyncpg
import httpx
import pytest
import test_provider_mailgun as mg
from conftest import IN_CI
from waiting import eventually

EMAILS = 20
PATIENCE = 15.0  # seconds: generous on a loaded 2-core machine; never a performance claim


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


REGISTER = "mutation R($i: RegisterEmailInput!) { registerEmail(input: $i) { email { id } } }"


class Cluster:
    """A throwaway PostgreSQL server: initdb in a temporary folder, started with pg_ctl."""

    def __init__(self, bin_dir: Path, data: Path, port: int) -> None:
        self.bin_dir, self.data, self.port = bin_dir, data, port

    def _pg_ctl(self, *args: str) -> None:
        command = ["runuser", "-u", "postgres", "--", str(self.bin_dir / "pg_ctl"), "-D", str(self.data), *args]
        subprocess.run(command, check=True, capture_output=True, timeout=60)  # noqa: S603

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._pg_ctl("-o", options, "-l", str(self.data / "server.log"), "start")  # no -w: it may still be starting

    def crash(self) -> None:
        self._pg_ctl("-m", "immediate", "stop")  # no shutdown checkpoint: recovery replays the WAL

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    found = sorted(glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found or shutil.which("runuser") is None or os.geteuid() != 0:
        message = "needs PostgreSQL's initdb and root (to run it as the postgres user)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    bin_dir = Path(found[-1]).parent
    # Not under pytest's tmp_path: the postgres user cannot enter root's private folders.
    data = Path(tempfile.mkdtemp(prefix="gateway-crash-"))
    shutil.chown(data, "postgres", "postgres")
    subprocess.run(  # noqa: S603
        ["runuser", "-u", "postgres", "--", str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    server = Cluster(bin_dir, data, free_port())
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            server.crash()
        shutil.rmtree(data, ignore_errors=True)


async def _until_ready(url: str, what: str) -> None:
    async with httpx.AsyncClient() as http:

        async def up() -> bool:
            with contextlib.suppress(httpx.TransportError):
                return (await http.get(url)).status_code == 200
            return False

        await eventually(up, what=f"{what} answering {url}", within=PATIENCE * 4, every=0.1)


class Gateway:
    """`gateway serve` in a subprocess, to kill -9 and start again on the same port."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env, self.cwd, self.port = env, cwd, free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = (cwd / "gateway.log").open("ab")

    def cli(self, *args: str) -> str:
        done = subprocess.run(  # noqa: S603
            [sys.executable, "-m", "gateway.cli", *args],
            env=self.env,
            cwd=self.cwd,
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout

    async def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "gateway.cli", "serve", "--port", str(self.port)],
            env=self.env,
            cwd=self.cwd,
            stdout=self.log,
            stderr=self.log,
        )
        await _until_ready(f"{self.base}/healthz", "gateway")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()  # SIGKILL: no lifespan shutdown, requests cut mid-way
            self.process.wait()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
async def gateway(cluster: Cluster, tmp_path: Path) -> AsyncIterator[Gateway]:

    async def accepting() -> bool:
        try:
            connection = await asyncpg.connect(host="127.0.0.1", port=cluster.port, user="postgres")
        except (OSError, asyncpg.PostgresError):
            return False
        await connection.close()
        return True

    await eventually(accepting, what="the private PostgreSQL accepting connections", within=PATIENCE * 4, every=0.2)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")},
        "GATEWAY_DATABASE_URL": cluster.url,
        "GATEWAY_DATA_DIR": str(tmp_path / "data"),
        "GATEWAY_SECRET_KEY": "crash-recovery-test-secret-key-0123456789-abc",
        "GATEWAY_MAILGUN_SIGNING_KEY": mg.SIGNING_KEY,
        "GATEWAY_PURGE_INTERVAL_SECONDS": "0",
    }
    server = Gateway(env, tmp_path)
    server.cli("migrate")
    yield server
    server.kill()
    server.log.close()


def _mailgun_body(kind: str, email_id: str, n: int) -> bytes:
    data = mg.event_data(
        kind, id=f"crash-{kind}-{n}", timestamp=datetime.now(UTC).timestamp(), recipient=f"client{n}@example.com"
    )
    data["message"]["headers"]["message-id"] = f"crash-{n}@mg.example.com"
    data["user-variables"] = {"gateway_email_id": email_id}
    return mg.signed(data, at=datetime.now(UTC), token=f"{kind}-{n:03d}".ljust(50, "x"))


async def test_a_webhook_burst_across_a_kill_and_a_database_crash_loses_nothing(gateway: Gateway, cluster: Cluster):
    # given a running gateway with registered e-mails, and a provider's events for them
    await gateway.start()
    key = gateway.cli("create-api-key", "--tenant", "Crash").strip().splitlines()[-1]
    ids = []
    async with httpx.AsyncClient(base_url=gateway.base, headers={"Authorization": f"Bearer {key}"}) as api:
        for n in range(EMAILS):
            i = {
                "externalId": f"crash-{n}",
                "subject": "s",
                "recipient": f"client{n}@example.com",
                "providerMessageId": f"crash-{n}@mg.example.com",
            }
            answer = await api.post("/graphql", json={"query": REGISTER, "variables": {"i": i}})
            ids.append(answer.json()["data"]["registerEmail"]["email"]["id"])
    # every e-mail delivered, every other one opened too
    events = [("delivered", n) for n in range(EMAILS)] + [("opened", n) for n in range(0, EMAILS, 2)]
    statuses: Counter[int | str] = Counter()
    acknowledged = 0
    progress = asyncio.Condition()  # notified at each acknowledgement and each failed attempt

    async def provider(kind: str, n: int) -> None:
        # As providers do: the same request again until it gets a 2xx.
        nonlocal acknowledged
        body = _mailgun_body(kind, ids[n], n)
        async with httpx.AsyncClient(timeout=10) as http:
            while True:
                try:
                    answer = await http.post(f"{gateway.base}/webhooks/mailgun", content=body)
                    statuses[answer.status_code] += 1
                    if answer.status_code == 200:
                        acknowledged += 1
                        async with progress:
                            progress.notify_all()
                        return
                except httpx.TransportError:
                    statuses["no answer"] += 1
                async with progress:
                    progress.notify_all()
                await asyncio.sleep(0.05)  # the provider's pause before it retries: part of what is simulated

    def outages_met() -> int:
        return statuses["no answer"] + statuses[503]

    def outage_met_since(met: int) -> bool:
        return outages_met() > met or acknowledged == len(events)  # (nobody left to meet it)

    async def chaos() -> None:
        async with progress:
            await progress.wait_for(lambda: acknowledged >= len(events) // 3)
        # the gateway dies and stays down until a provider's request has met the outage
        gateway.kill()
        met = outages_met()
        async with progress:
            await progress.wait_for(lambda: outage_met_since(met))
        await gateway.start()
        async with progress:
            await progress.wait_for(lambda: acknowledged >= 2 * len(events) // 3)
        # the database crashes and stays down until a request has been answered "retry later"
        # (or not at all) for it
        cluster.crash()
        met = outages_met()
        async with progress:
            await progress.wait_for(lambda: outage_met_since(met))
        cluster.start()

    # when: the burst, four requests at a time, with a kill -9 and a database crash in the middle
    limit = asyncio.Semaphore(4)

    async def bounded(kind: str, n: int) -> None:
        async with limit:
            await provider(kind, n)

    async with asyncio.timeout(PATIENCE * 8):
        await asyncio.gather(chaos(), *(bounded(kind, n) for kind, n in events))

    # then: every event once, the statuses they give, and only "retry later" answers on the way
    connection = await asyncpg.connect(host="127.0.0.1", port=cluster.port, user="postgres")
    try:
        keys = await connection.fetch(
            "SELECT event_key, count(*) AS n FROM email_event WHERE source = 'mailgun' GROUP BY event_key"
        )
        shown = await connection.fetch("SELECT provider_message_id, status FROM email ORDER BY id")
        pending = await connection.fetchval("SELECT count(*) FROM pending_event")
    finally:
        await connection.close()
    assert len(keys) == len(events)
    assert all(row["n"] == 1 for row in keys)
    assert [row["status"] for row in shown] == ["OPENED" if n % 2 == 0 else "DELIVERED" for n in range(EMAILS)]
    assert pending == 0
    print(f"answers during the burst: {dict(statuses)}")  # noqa: T201
    assert set(statuses) <= {200, 503, "no answer"}, statuses
    assert statuses["no answer"] + statuses[503] > 0, "the burst must have met the outages"
