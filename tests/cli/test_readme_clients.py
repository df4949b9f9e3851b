"""The README's Python client (gql), run as written against a real server, across a restart.

The block under "Python: gql" is executed as it stands: its query lists the
failed e-mails, and its `follow()` generator receives live changes, reconnects
after the server is killed, and resumes with `since`, so a change made while it
was away arrives exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from waiting import eventually

ROOT = Path(__file__).resolve().parent.parent.parent
PATIENCE = 30.0  # seconds: generous on a loaded 2-core machine; never a performance claim
REGISTER = "mutation R($i: RegisterEmailInput!) { registerEmail(input: $i) { email { id } } }"
RECORD = "mutation E($i: RecordEmailEventInput!) { recordEmailEvent(input: $i) { id emailStatus } }"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _readme_block(title: str) -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index(title)
    return re.search(r"```python\n(.*?)```", readme[start:], flags=re.S).group(1)  # type: ignore[union-attr]


class Server:
    def __init__(self, tmp: Path) -> None:
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")},
            "GATEWAY_DATA_DIR": str(tmp / "data"),
            "GATEWAY_PURGE_INTERVAL_SECONDS": "0",
            "GATEWAY_FEED_POLL_SECONDS": "0.2",
        }
        self.tmp, self.port = tmp, _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/graphql"

    def cli(self, *args: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "gateway.cli", *args],
            env=self.env,
            cwd=self.tmp,  # noqa: S603
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    async def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--port", str(self.port)],  # noqa: S603
            env=self.env,
            cwd=self.tmp,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        async with httpx.AsyncClient() as http:

            async def up() -> bool:
                assert self.process is not None
                assert self.process.poll() is None, "gateway serve exited"
                try:
                    return (await http.get(f"http://127.0.0.1:{self.port}/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(up, what="gateway serve answering /healthz", within=PATIENCE, every=0.1)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()


async def test_the_readme_gql_client_lists_failures_and_follows_changes_across_a_restart(tmp_path: Path) -> None:
    # given a server, a key, and the README's block loaded as a newcomer would paste it
    server = Server(tmp_path)
    server.cli("migrate")
    key = server.cli("create-api-key", "--tenant", "Readers").strip().splitlines()[-1]
    namespace: dict[str, Any] = {}
    exec(compile(_readme_block("**Python: gql.**"), "README.md", "exec"), namespace)  # noqa: S102
    await server.start()
    auth = {"Authorization": f"Bearer {key}"}
    n = 0

    async def new_email(status: str | None = None) -> str:
        nonlocal n
        n += 1
        async with httpx.AsyncClient(headers=auth) as http:
            answer = await http.post(
                server.url,
                json={
                    "query": REGISTER,
                    "variables": {
                        "i": {"externalId": f"r-{n}", "subject": f"Subject {n}", "recipient": f"c{n}@example.com"}
                    },
                },
            )
            email_id = answer.json()["data"]["registerEmail"]["email"]["id"]
            if status is not None:
                event = {
                    "emailId": email_id,
                    "eventKey": f"k-{n}",
                    "status": status,
                    "occurredAt": "2026-12-01T10:00:00Z",
                    "description": status.lower(),
                    **({"failureCategory": "HARD_BOUNCE", "smtpCode": 550} if status == "DELIVERY_FAILED" else {}),
                }
                answer = await http.post(server.url, json={"query": RECORD, "variables": {"i": event}})
                assert "errors" not in answer.json(), answer.text
        return str(email_id)

    received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    arrived = asyncio.Event()

    async def consume() -> None:
        async for change in namespace["follow"](server.url, key):
            await received.put(change)
            arrived.set()

    try:
        failed = await new_email("DELIVERY_FAILED")
        # when: the failures are listed, and the follower is live (a change reaches it)
        listed = await namespace["failed_emails"](server.url, key)
        follower = asyncio.create_task(consume())
        async with asyncio.timeout(PATIENCE):
            # The follower shows no sign of having subscribed but the changes it gets: make a
            # change, wait a moment for it to arrive (at once when it does), again until one does.
            while not arrived.is_set():
                assert not follower.done(), follower.exception()
                await new_email()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(arrived.wait(), timeout=0.3)
        # the server dies; after its restart a change is made before the follower is back
        server.kill()
        while not received.empty():
            received.get_nowait()
        await server.start()
        away = await new_email("DELIVERED")
        async with asyncio.timeout(PATIENCE):
            seen = []
            while not any(c["email"]["id"] == away and c["status"] == "DELIVERED" for c in seen):
                seen.append(await received.get())
        follower.cancel()
    finally:
        server.kill()
    # then
    assert [e["id"] for e in listed] == [failed]
    assert listed[0]["details"]["failure"]["smtpCode"] == 550
    assert len({c["cursor"] for c in seen}) == len(seen)  # no duplicate reached the caller
    assert [c["status"] for c in seen if c["email"]["id"] == away] == ["SENT", "DELIVERED"]
