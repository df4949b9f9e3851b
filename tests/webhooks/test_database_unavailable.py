"""A PostgreSQL that refuses connections for now is an outage: 503, and the provider retries.

A local server speaks just enough of PostgreSQL's protocol to refuse the
connection the way a starting, shutting-down or full server does, so asyncpg
raises its real exception classes from a real socket.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from test_webhook_routes import app_client, now, post_sendgrid, sendgrid_event

from gateway.db import database_unavailable

_SSL_REQUEST = 80877103
STARTING_UP = ("57P03", "the database system is starting up")
TOO_MANY = ("53300", "sorry, too many clients already")
SHUTTING_DOWN = ("57P01", "terminating connection due to administrator command")
NOT_AN_OUTAGE = ("28P01", 'password authentication failed for user "postgres"')


def _error_response(code: str, message: str) -> bytes:
    fields = b"".join(
        k + v.encode() + b"\0" for k, v in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", code), (b"M", message))
    )
    body = fields + b"\0"
    return b"E" + struct.pack("!I", len(body) + 4) + body


@pytest.fixture
async def refusing_server() -> AsyncIterator[Callable[[tuple[str, str]], asyncio.Future[int]]]:
    """`await refusing_server((sqlstate, message))`: the port of a server refusing every connection so."""
    servers: list[asyncio.Server] = []

    async def start(error: tuple[str, str]) -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    (length,) = struct.unpack("!I", await reader.readexactly(4))
                    payload = await reader.readexactly(length - 4)
                    if struct.unpack("!I", payload[:4])[0] != _SSL_REQUEST:
                        break  # the startup message: refuse it
                    writer.write(b"N")  # no TLS here; asyncpg goes on in plain text
                    await writer.drain()
                writer.write(_error_response(*error))
                await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start  # type: ignore[misc]
    for server in servers:
        server.close()
        await server.wait_closed()


async def _connection_error(port: int) -> BaseException:
    engine = create_async_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/gateway")
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as error:  # the real error, as the ingestion path sees it
        return error
    finally:
        await engine.dispose()
    raise AssertionError("the refusing server accepted a connection")


@pytest.mark.parametrize(
    ("refusal", "cause"),
    [
        (STARTING_UP, asyncpg.exceptions.CannotConnectNowError),
        (TOO_MANY, asyncpg.exceptions.TooManyConnectionsError),
        (SHUTTING_DOWN, asyncpg.exceptions.AdminShutdownError),
    ],
)
async def test_a_server_not_taking_connections_now_is_unavailable(refusing_server, refusal, cause) -> None:  # type: ignore[no-untyped-def]
    # given: a real asyncpg error from a server that refuses the connection for now
    error = await _connection_error(await refusing_server(refusal))
    assert isinstance(error.__cause__ and error.__cause__.__cause__, cause)
    # when / then
    assert database_unavailable(error) is True


async def test_a_refused_login_is_not_an_outage(refusing_server) -> None:  # type: ignore[no-untyped-def]
    # given: wrong credentials are a configuration error, not a reason to retry
    error = await _connection_error(await refusing_server(NOT_AN_OUTAGE))
    # when / then
    assert database_unavailable(error) is False


@pytest.mark.parametrize("refusal", [STARTING_UP, TOO_MANY])
async def test_a_webhook_while_postgresql_starts_up_answers_503(refusing_server, tmp_path, refusal) -> None:  # type: ignore[no-untyped-def]
    # given: the gateway's database is starting up (or full)
    port = await refusing_server(refusal)
    manager, client = await app_client(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/gateway", tmp_path)
    try:
        # when
        response = await post_sendgrid(client, [sendgrid_event("delivered", "x", now(), sg_message_id="m.filter1")])
        # then: SendGrid retries a 503
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "30"
    finally:
        await client.aclose()
        await manager.__aexit__(None, None, None)
