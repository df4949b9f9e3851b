"""A real gateway on a loopback port, and a small graphql-transport-ws client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
import websockets
from websockets.asyncio.client import ClientConnection

from gateway.app import create_app
from gateway.cli import WS_MAX_SIZE
from gateway.config import Settings

PROTOCOL = "graphql-transport-ws"
PATIENCE = 15.0  # seconds: generous on a loaded 2-core machine; never a performance claim


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[str, Any]]:
    """Serve the app with uvicorn on a free port in this event loop; yields (base URL, app)."""
    app = create_app(settings)
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        ws_max_size=WS_MAX_SIZE,
        ws_per_message_deflate=False,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(PATIENCE):
            while not server.started:
                await asyncio.sleep(0.01)
        yield f"127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        await task


class Client:
    """One graphql-transport-ws connection."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(
        cls, address: str, key: str | None, *, init: bool = True, protocol: str = PROTOCOL, **kwargs: Any
    ) -> AsyncIterator[Client]:
        async with websockets.connect(f"ws://{address}/graphql", subprotocols=[protocol], **kwargs) as ws:  # type: ignore[list-item]
            client = cls(ws)
            if init:
                payload = {"authorization": f"Bearer {key}"} if key else {}
                await client.send({"type": "connection_init", "payload": payload})
                ack = await client.receive()
                assert ack["type"] == "connection_ack", ack
            yield client

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def receive(self, timeout: float = PATIENCE) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                message = json.loads(await self.ws.recv())
                if message.get("type") == "ping":
                    await self.send({"type": "pong"})
                    continue
                return message  # type: ignore[no-any-return]

    async def subscribe(self, op_id: str, query: str, variables: dict[str, Any] | None = None) -> None:
        await self.send({"id": op_id, "type": "subscribe", "payload": {"query": query, "variables": variables or {}}})

    async def next_data(self, op_id: str, timeout: float = PATIENCE) -> dict[str, Any]:
        message = await self.receive(timeout)
        assert message.get("id") == op_id and message["type"] == "next", message
        assert "errors" not in message["payload"], message
        return message["payload"]["data"]  # type: ignore[no-any-return]

    async def closed_with(self, timeout: float = PATIENCE) -> tuple[int | None, str]:
        """Wait for the server to close; (code, reason)."""
        async with asyncio.timeout(timeout):
            with contextlib.suppress(websockets.ConnectionClosed):
                while True:
                    await self.ws.recv()
        assert self.ws.close_code is not None
        return self.ws.close_code, self.ws.close_reason or ""


CHANGES = """
subscription Changes($filter: EmailStatusChangeFilter, $since: String) {
  emailStatusChanged(filter: $filter, since: $since) {
    cursor previousStatus status changedAt
    email { id subject emailStatus relation { name } }
  }
}
"""


REGISTER = """
mutation($i: RegisterEmailInput!) { registerEmail(input: $i) { email { id } } }
"""
RECORD = """
mutation($i: RecordEmailEventInput!) { recordEmailEvent(input: $i) { id emailStatus } }
"""


async def gql(address: str, key: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    import httpx

    async with httpx.AsyncClient(base_url=f"http://{address}") as http:
        response = await http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers={"Authorization": f"Bearer {key}"}
        )
    body = response.json()
    assert response.status_code == 200 and "errors" not in body, body
    return body["data"]  # type: ignore[no-any-return]


async def register_via_api(address: str, key: str, external_id: str, **extra: Any) -> str:
    data = await gql(
        address,
        key,
        REGISTER,
        {"i": {"externalId": external_id, "subject": f"Subject {external_id}", "recipient": "a@example.com", **extra}},
    )
    return data["registerEmail"]["email"]["id"]  # type: ignore[no-any-return]


async def record_via_api(
    address: str, key: str, email_id: str, status: str, event_key: str, occurred_at: str = "2026-11-01T10:00:00Z"
) -> None:
    await gql(
        address,
        key,
        RECORD,
        {"i": {"emailId": email_id, "status": status, "occurredAt": occurred_at, "eventKey": event_key}},
    )


def error_of(message: dict[str, Any]) -> str:
    """The first error message of an `error` frame or of a `next` frame that carries errors."""
    if message["type"] == "error":
        return str(message["payload"][0]["message"])
    assert message["type"] == "next" and message["payload"].get("errors"), message
    return str(message["payload"]["errors"][0]["message"])


async def expect_error(client: Client, op_id: str) -> str:
    """The error an operation ends with (an `error` frame, or `next` with errors then `complete`)."""
    message = await client.receive()
    assert message.get("id") == op_id, message
    text = error_of(message)
    if message["type"] == "next":
        done = await client.receive()
        assert done == {"id": op_id, "type": "complete"}, done
    return text


async def listening(app: Any, count: int) -> None:
    """Wait until `count` subscriptions know where they start: later changes reach them."""
    async with asyncio.timeout(PATIENCE):
        while app.state.feed.ready_count < count:
            await asyncio.sleep(0.01)
