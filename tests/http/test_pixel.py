"""The tracking image over HTTP: the same GIF for every token, one open per fetch."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from datetime import datetime, timedelta

import pytest
from asgi_lifespan import LifespanManager
from conftest import make_settings
from factories import T0, make_tenant, register, reload
from httpx import ASGITransport, AsyncClient, Response
from sqlalchemy import event, select
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool

from gateway import models, pixel
from gateway.app import create_app
from gateway.config import Settings
from gateway.enums import EmailStatus
from gateway.ids import encode_id
from gateway.pixel import sign_tracking_id, tracking_url

# The 43-byte transparent 1x1 GIF89a, byte for byte.
GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
NO_CACHE = {
    "content-type": "image/gif",
    "cache-control": "no-store, no-cache, must-revalidate, private, max-age=0",
    "pragma": "no-cache",
    "expires": "0",
}
SENT = T0
OPENED = T0 + timedelta(days=2, hours=3)
DESKTOP = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.3.0"
APPLE_MPP = "Mozilla/5.0"
OPENS = """
query Opens($id: ID!) {
  email(id: $id) { details { status opens { count likelyAutomated } history { source likelyAutomated description } } }
}
"""
OTHER_KEY = b"another-gateway-key-that-is-long-enough-0123456789"


def assert_gif(response: Response) -> None:
    assert response.status_code == 200
    assert response.content == GIF and len(response.content) == 43
    assert {name: response.headers.get(name) for name in NO_CACHE} == NO_CACHE


def pixel_url(settings: Settings, email: models.Email) -> str:
    """The URL registerEmail hands out for this e-mail."""
    return tracking_url(str(settings.public_url), settings.signing_key(), email.tracking_id)


async def pixel_events(session_factory, email: models.Email) -> list[models.EmailEvent]:  # type: ignore[no-untyped-def]
    async with session_factory() as session:
        statement = select(models.EmailEvent).where(
            models.EmailEvent.email_id == email.id, models.EmailEvent.source == "pixel"
        )
        return list((await session.execute(statement)).scalars().all())


@contextmanager
def database_work() -> Iterator[list[str]]:
    """Everything any engine does meanwhile: connections checked out, statements sent."""
    seen: list[str] = []

    def on_checkout(*_: object) -> None:
        seen.append("checkout")

    def on_statement(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        seen.append(statement)

    event.listen(Pool, "checkout", on_checkout)
    event.listen(Engine, "before_cursor_execute", on_statement)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", on_statement)
        event.remove(Pool, "checkout", on_checkout)


@pytest.fixture
async def tenant(session_factory):  # type: ignore[no-untyped-def]
    return await make_tenant(session_factory)


@pytest.fixture
async def email(session_factory, tenant) -> models.Email:  # type: ignore[no-untyped-def]
    return await register(session_factory, tenant, sent_at=SENT)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[datetime], None]:
    """`clock(moment)`: the tracking-image route reads `moment` as the time, no sleeping."""

    def stop_at(moment: datetime) -> None:
        monkeypatch.setattr(pixel, "utcnow", lambda: moment)

    stop_at(OPENED)
    return stop_at


@pytest.fixture
async def client_from(settings: Settings, session_factory) -> AsyncIterator[Callable[[str], Awaitable[AsyncClient]]]:  # type: ignore[no-untyped-def]
    """`await client_from(address)`: a client on the real app, connecting from that address."""
    async with AsyncExitStack() as stack:

        async def make(address: str) -> AsyncClient:
            manager = await stack.enter_async_context(LifespanManager(create_app(settings)))
            transport = ASGITransport(app=manager.app, client=(address, 50123))
            return await stack.enter_async_context(AsyncClient(transport=transport, base_url="http://testserver"))

        yield make


async def test_an_open_through_the_registered_url_is_recorded_once(
    client_from, settings, session_factory, email, clock
) -> None:  # type: ignore[no-untyped-def]
    # given a reader at 203.0.113.77 with a desktop mail client
    client = await client_from("203.0.113.77")
    # when it fetches the URL registerEmail handed out
    response = await client.get(pixel_url(settings, email), headers={"User-Agent": DESKTOP})
    # then the GIF, and the e-mail is OPENED with one open and this row
    assert_gif(response)
    found = await reload(session_factory, email)
    assert found.status is EmailStatus.OPENED
    assert (found.open_count, found.first_opened_at, found.opens_likely_automated) == (1, OPENED, False)
    (row,) = await pixel_events(session_factory, email)
    assert (row.status, row.occurred_at, row.user_agent, row.ip) == (EmailStatus.OPENED, OPENED, DESKTOP, "203.0.113.0")
    assert row.machine_open is False
    assert row.description == "Opened (tracking image fetched by a mail client)"


async def test_an_ipv6_reader_is_kept_to_its_48(client_from, settings, session_factory, email, clock) -> None:  # type: ignore[no-untyped-def]
    client = await client_from("2001:db8:85a3:1234:5678::7")
    assert_gif(await client.get(pixel_url(settings, email), headers={"User-Agent": DESKTOP}))
    (row,) = await pixel_events(session_factory, email)
    assert row.ip == "2001:db8:85a3::"


async def test_the_user_agent_is_cut_at_500_characters(client, settings, session_factory, email, clock) -> None:  # type: ignore[no-untyped-def]
    await client.get(pixel_url(settings, email), headers={"User-Agent": DESKTOP + "x" * 1000})
    (row,) = await pixel_events(session_factory, email)
    assert row.user_agent == (DESKTOP + "x" * 1000)[:500]


def _flip_mac(token: str) -> str:
    tracking_id, _, mac = token.partition(".")
    middle = len(mac) // 2
    return f"{tracking_id}.{mac[:middle]}{'B' if mac[middle] == 'A' else 'A'}{mac[middle + 1 :]}"


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(
            lambda key, email: _flip_mac(sign_tracking_id(key, email.tracking_id)), id="one-mac-character-flipped"
        ),
        pytest.param(lambda key, email: sign_tracking_id(OTHER_KEY, "made-up-tracking-id"), id="made-up-id-other-key"),
        pytest.param(lambda key, email: sign_tracking_id(OTHER_KEY, email.tracking_id), id="real-id-other-key"),
        pytest.param(lambda key, email: email.tracking_id, id="no-mac"),
        pytest.param(lambda key, email: "", id="empty"),
    ],
)
async def test_a_forged_token_gets_the_gif_and_does_no_database_work(
    client, settings, session_factory, email, forge
) -> None:  # type: ignore[no-untyped-def]
    # given a token that the gateway did not sign
    token = forge(settings.signing_key(), email)
    # when it is fetched
    with database_work() as work:
        response = await client.get(f"/t/{token}.gif", headers={"User-Agent": DESKTOP})
    # then the same GIF, no query, no open, and the status stays
    assert_gif(response)
    assert work == []
    assert await pixel_events(session_factory, email) == []
    assert (await reload(session_factory, email)).status is EmailStatus.SENT


async def test_a_genuine_token_for_no_email_records_nothing(client, settings, session_factory, email) -> None:  # type: ignore[no-untyped-def]
    token = sign_tracking_id(settings.signing_key(), "NoSuchTrackingId0000000")
    with database_work() as work:
        assert_gif(await client.get(f"/t/{token}.gif", headers={"User-Agent": DESKTOP}))
    assert work  # it looked (which the forged tokens above never do), and found nothing
    async with session_factory() as session:
        assert (await session.execute(select(models.EmailEvent))).scalars().all() == []
    assert (await reload(session_factory, email)).status is EmailStatus.SENT


async def test_a_burst_in_one_second_counts_once_and_another_second_counts_again(
    client, settings, session_factory, email, clock
) -> None:  # type: ignore[no-untyped-def]
    url = pixel_url(settings, email)
    # given a client that fetches twice within one second
    clock(OPENED.replace(microsecond=100_000))
    await client.get(url, headers={"User-Agent": DESKTOP})
    clock(OPENED.replace(microsecond=900_000))
    await client.get(url, headers={"User-Agent": DESKTOP})
    # then one open
    assert (await reload(session_factory, email)).open_count == 1
    # when it fetches again in the next second
    clock(OPENED + timedelta(seconds=1))
    await client.get(url, headers={"User-Agent": DESKTOP})
    # then two opens
    found = await reload(session_factory, email)
    assert (found.open_count, found.last_opened_at) == (2, OPENED + timedelta(seconds=1))
    assert len(await pixel_events(session_factory, email)) == 2


async def test_two_clients_in_the_same_second_are_two_opens(client, settings, session_factory, email, clock) -> None:  # type: ignore[no-untyped-def]
    url = pixel_url(settings, email)
    await client.get(url, headers={"User-Agent": DESKTOP})
    await client.get(
        url,
        headers={
            "User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
        },
    )
    assert (await reload(session_factory, email)).open_count == 2


async def test_apple_mpp_is_likely_automated_until_a_person_opens(client, settings, tenant, email, clock) -> None:  # type: ignore[no-untyped-def]
    variables = {"id": encode_id("Email", email.id)}  # type: ignore[arg-type]

    async def opens() -> dict:  # type: ignore[type-arg]
        response = await client.post("/graphql", json={"query": OPENS, "variables": variables}, headers=tenant.auth)
        body = response.json()
        assert "errors" not in body, body
        return body["data"]["email"]["details"]  # type: ignore[no-any-return]

    # given Apple Mail Privacy Protection preloading the image
    await client.get(pixel_url(settings, email), headers={"User-Agent": APPLE_MPP})
    # then OPENED, but likely automated
    details = await opens()
    assert details["status"] == "OPENED"
    assert details["opens"] == {"count": 1, "likelyAutomated": True}
    assert details["history"][-1] == {
        "source": "pixel",
        "likelyAutomated": True,
        "description": "Opened (tracking image fetched by Apple Mail Privacy Protection)",
    }
    # when a person opens it in a desktop client an hour later
    clock(OPENED + timedelta(hours=1))
    await client.get(pixel_url(settings, email), headers={"User-Agent": DESKTOP})
    # then not every open is automated any more
    assert (await opens())["opens"] == {"count": 2, "likelyAutomated": False}


async def test_head_answers_the_headers_and_records_nothing(client, settings, session_factory, email) -> None:  # type: ignore[no-untyped-def]
    response = await client.head(pixel_url(settings, email), headers={"User-Agent": DESKTOP})
    assert response.status_code == 200
    assert {name: response.headers.get(name) for name in NO_CACHE} == NO_CACHE
    assert response.headers["content-length"] == "43"
    assert response.content == b""
    assert await pixel_events(session_factory, email) == []


@pytest.mark.parametrize("suffix", ["", ".png", ".gif.png", ".GIF", "/x.gif"])
async def test_a_path_without_gif_is_404(client, settings, session_factory, email, suffix) -> None:  # type: ignore[no-untyped-def]
    token = sign_tracking_id(settings.signing_key(), email.tracking_id)
    response = await client.get(f"/t/{token}{suffix}", headers={"User-Agent": DESKTOP})
    assert response.status_code == 404
    assert await pixel_events(session_factory, email) == []


async def test_the_gif_survives_a_database_outage(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    # given a gateway whose database does not answer
    settings = make_settings("postgresql+asyncpg://postgres@127.0.0.1:1/none", tmp_path)
    token = sign_tracking_id(settings.signing_key(), "SomeTrackingId000000000")
    app = create_app(settings)
    # when the image is fetched with a genuine token
    with caplog.at_level(logging.WARNING, logger="gateway.pixel"):
        async with LifespanManager(app) as manager:
            transport = ASGITransport(app=manager.app)
            async with AsyncClient(transport=transport, base_url="http://testserver") as client:
                response = await client.get(f"/t/{token}.gif", headers={"User-Agent": DESKTOP})
    # then the image all the same, and the failure in the log
    assert_gif(response)
    assert any(r.message == "tracking-image open not recorded" and r.exc_info for r in caplog.records)
