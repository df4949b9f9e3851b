"""The live fast path sends exactly the frames strawberry sends: differential tests.

Two gateways on one database: one with the fast path (each change rendered once
per shared selection), one without (strawberry runs every subscription, the
reference). Generated subscriptions (selections, aliases, fragments, directives,
filters, variables, bad input) go to both; after the same changes, each operation
must have received the same frames, byte for byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest
from conftest import make_settings
from factories import make_tenant
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from live_helpers import Client, gql, listening, record_via_api, register_via_api, serving
from sqlalchemy import select

from gateway import models
from gateway.ids import encode_position

STATUSES = ["SENT", "DELIVERED", "DELIVERY_FAILED", "OPENED"]
CHANGE_LEAVES = ["cursor", "previousStatus", "status", "changedAt", "__typename"]
EMAIL_LEAVES = ["id", "externalId", "subject", "recipient", "sentAt", "emailStatus", "__typename"]


def _pick(draw: st.DrawFn, leaves: list[str], objects: dict[str, st.SearchStrategy[str]]) -> str:
    names = draw(st.lists(st.sampled_from(leaves + list(objects)), min_size=1, max_size=6, unique=True))
    parts = []
    for name in names:
        alias = f"{name.strip('_')}X: " if name != "__typename" and draw(st.integers(0, 4)) == 0 else ""
        include = " @include(if: $on)" if draw(st.integers(0, 6)) == 0 else ""
        body = f" {{ {draw(objects[name])} }}" if name in objects else ""
        parts.append(f"{alias}{name}{include}{body}")
    return " ".join(parts)


@st.composite
def _email(draw: st.DrawFn) -> str:
    objects = {
        "relation": st.sampled_from(["id name", "name externalId __typename", "id"]),
        "documents": st.sampled_from(["id title", "title emailStatus", "__typename id"]),
        "invoice": st.sampled_from(["id number", "number invoiceStatus emailStatus"]),
        "details": st.sampled_from(
            [
                "status statusChangedAt",
                "failure { category reason smtpCode } opens { count likelyAutomated }",
                "subject deliveredAt historyExpired",
            ]
        ),
    }
    body = _pick(draw, EMAIL_LEAVES, objects)
    return draw(st.sampled_from([body, f"... on Email {{ {body} }}", body]))


@st.composite
def subscriptions(draw: st.DrawFn, ids: dict[str, Any], since: str) -> dict[str, Any]:
    """A subscribe payload: mostly valid and fast-path material, sometimes not.

    Valid ones resume from `since`, a change made before them: what they receive
    does not depend on when each gateway registered them.
    """
    selection = _pick(draw, CHANGE_LEAVES, {"email": _email()})
    if draw(st.integers(0, 5)) == 0:
        selection = f"...F {selection}"
        fragment = " fragment F on EmailStatusChange { status }"
    else:
        fragment = ""
    variables: dict[str, Any] = {}
    definitions = []
    if "$on" in selection:
        variables["on"] = draw(st.booleans())
        definitions.append("$on: Boolean!")
    arguments = []
    filter_value: dict[str, Any] = {}
    if draw(st.booleans()):
        filter_value["statuses"] = draw(st.lists(st.sampled_from(STATUSES), min_size=1, max_size=3, unique=True))
    if draw(st.integers(0, 3)) == 0:
        filter_value["emailIds"] = draw(st.lists(st.sampled_from(ids["emails"]), min_size=1, max_size=2, unique=True))
    if draw(st.integers(0, 4)) == 0:
        filter_value["relationId"] = draw(st.sampled_from([ids["relation"], "not-an-id"]))
    if draw(st.integers(0, 4)) == 0:
        filter_value["documentId"] = ids["document"]
    if filter_value:
        if draw(st.booleans()):
            variables["filter"] = filter_value
            definitions.append("$filter: EmailStatusChangeFilter")
            arguments.append("filter: $filter")
        else:
            arguments.append(f"filter: {_literal(filter_value)}")
    if draw(st.integers(0, 8)) == 0:
        arguments.append('since: "garbage"')
    elif draw(st.booleans()):
        arguments.append(f'since: "{since}"')
    else:
        variables["since"] = since
        definitions.append("$since: String")
        arguments.append("since: $since")
    args = f"({', '.join(arguments)})" if arguments else ""
    alias = "changed: " if draw(st.integers(0, 3)) == 0 else ""
    name = draw(st.sampled_from(["", "Live"]))
    broken = draw(st.integers(0, 12))
    if broken == 0:
        selection += " notAField"  # a validation error: the reference answers
    elif broken == 1 and "on" in variables:
        variables["on"] = "yes"  # a variable that does not coerce
    header = f"subscription {name}({', '.join(definitions)})" if definitions else f"subscription {name}"
    query = f"{header} {{ {alias}emailStatusChanged{args} {{ {selection} }} }}{fragment}"
    return {"query": query, "variables": variables, **({"operationName": name} if name else {})}


def _literal(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    return value if value in STATUSES else f'"{value}"'


def _by_operation(frames: list[str]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for frame in frames:
        grouped.setdefault(json.loads(frame).get("id"), []).append(frame)
    return grouped


SENTINEL = 'subscription {{ emailStatusChanged(since: "{since}") {{ cursor }} }}'


async def _frames(client: Client, since: str, last: str, grace: float = 0.3) -> tuple[list[str], int]:
    """Every frame until the sentinel operation has the change at `last`, then a grace period."""
    frames: list[str] = []
    sentinel: list[str] = []
    try:
        if last != since:  # (the changes may have changed no status at all)
            await _until(client, last, frames, sentinel)
    except TimeoutError:
        raise AssertionError(f"the sentinel never got {last}: {sentinel}; other frames: {frames}") from None
    while True:  # the other operations of the socket run in tasks of their own
        try:
            async with asyncio.timeout(grace):
                raw = await client.ws.recv()
        except TimeoutError:
            return frames, len(sentinel)
        frames.append(raw)  # type: ignore[arg-type]


async def _until(client: Client, last: str, frames: list[str], sentinel: list[str]) -> None:
    async with asyncio.timeout(15):
        while True:
            raw = await client.ws.recv()
            assert isinstance(raw, str), "graphql-transport-ws frames are text"
            message = json.loads(raw)
            if message.get("id") != "sentinel":
                frames.append(raw)
                continue
            sentinel.append(raw)
            if message["payload"]["data"]["emailStatusChanged"]["cursor"] == last:
                return


@pytest.fixture
async def pair(backend, tmp_path, session_factory):  # type: ignore[no-untyped-def]
    fast = make_settings(backend, tmp_path / "fast", ws_init_timeout_seconds=5)
    reference = make_settings(backend, tmp_path / "ref", ws_init_timeout_seconds=5, fast_path=False)
    office = await make_tenant(session_factory)
    async with serving(fast) as (fast_address, fast_app), serving(reference) as (ref_address, ref_app):
        emails = [
            await register_via_api(
                fast_address,
                office.key,
                f"m-{n}",
                relation={"externalId": "r", "name": "Bakery"},
                documents=[{"externalId": f"d-{n}", "title": f"Doc {n}"}],
                **({"invoice": {"externalId": "i", "number": "2026-1"}} if n == 0 else {}),
            )
            for n in range(3)
        ]
        data = await gql(fast_address, office.key, "{ emails { edges { node { relation { id } documents { id } } } } }")
        node = data["emails"]["edges"][-1]["node"]
        ids = {"emails": emails, "relation": node["relation"]["id"], "document": node["documents"][0]["id"]}
        yield {
            "fast": (fast_address, fast_app),
            "reference": (ref_address, ref_app),
            "office": office,
            "ids": ids,
            "session_factory": session_factory,
        }


_COUNTER = iter(range(10**9))


async def _latest_cursor(session_factory: Any, tenant_id: int) -> str:
    async with session_factory() as session:
        row = (
            await session.execute(
                select(models.StatusChange.txid, models.StatusChange.id)
                .where(models.StatusChange.tenant_id == tenant_id)
                .order_by(models.StatusChange.txid.desc(), models.StatusChange.id.desc())
                .limit(1)  # type: ignore[union-attr]
            )
        ).one()
    return encode_position((int(row[0]), int(row[1])))


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(st.data())
async def test_the_live_fast_path_sends_the_reference_frames(pair, data) -> None:  # type: ignore[no-untyped-def]
    # given: a few generated subscriptions, each twice on the fast gateway (so that
    # they share renders) and once on the reference
    office, ids = pair["office"], pair["ids"]
    (fast_address, fast_app), (ref_address, _) = pair["fast"], pair["reference"]
    run = next(_COUNTER)
    await record_via_api(
        fast_address, office.key, ids["emails"][2], "SENT", f"k-{run}-before", occurred_at="2026-11-01T09:00:00Z"
    )
    since = await _latest_cursor(pair["session_factory"], office.id)
    payloads = [data.draw(subscriptions(ids, since)) for _ in range(3)]
    renders_before = fast_app.state.live.renders
    async with (
        Client.connect(fast_address, office.key) as one,
        Client.connect(fast_address, office.key) as two,
        Client.connect(ref_address, office.key) as ref,
    ):
        for client in (one, two, ref):
            for n, payload in enumerate(payloads):
                await client.send({"id": f"s{n}", "type": "subscribe", "payload": payload})
            await client.subscribe("sentinel", SENTINEL.format(since=since))
        # when: changes happen
        for n, (email, status) in enumerate(zip(ids["emails"], data.draw(st.permutations(STATUSES[1:])), strict=False)):
            await record_via_api(
                fast_address,
                office.key,
                email,
                status,
                f"k-{run}-{n}",
                occurred_at=f"2026-11-{10 + run % 15:02d}T10:0{n}:00Z",
            )
        # then: the same frames, in the same order, per operation
        last = await _latest_cursor(pair["session_factory"], office.id)
        (got_one, _), (got_two, _), (expected, sentinel) = await asyncio.gather(
            _frames(one, since, last), _frames(two, since, last), _frames(ref, since, last)
        )
    # (operations of one socket interleave freely: the order that counts is each one's)
    assert _by_operation(got_one) == _by_operation(expected), payloads
    assert _by_operation(got_two) == _by_operation(expected), payloads
    delivered = sum('"type":"next"' in f for f in expected) + sentinel
    # and the fast gateway rendered each change at most once per shared selection
    assert fast_app.state.live.renders - renders_before <= delivered, (delivered, payloads)


async def test_subscribers_that_share_a_selection_share_one_render(pair) -> None:  # type: ignore[no-untyped-def]
    # given: five sockets with the same subscription, one with another selection
    office, ids = pair["office"], pair["ids"]
    address, app = pair["fast"]
    query = "subscription { emailStatusChanged { cursor status email { id relation { name } } } }"
    other = "subscription { emailStatusChanged { status } }"
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Client.connect(address, office.key)) for _ in range(6)]
        for n, client in enumerate(clients):
            await client.subscribe("1", other if n == 5 else query)
        await listening(app, 6)
        renders = app.state.live.renders
        # when: one change
        await record_via_api(address, office.key, ids["emails"][1], "OPENED", "shared-open")
        # then: everyone has it, and it was executed once per distinct selection
        frames = [await client.next_data("1") for client in clients]
        assert all(f == frames[0] for f in frames[:5]) and frames[5] == {"emailStatusChanged": {"status": "OPENED"}}
        assert frames[0]["emailStatusChanged"]["email"] == {"id": ids["emails"][1], "relation": {"name": "Bakery"}}
        assert app.state.live.renders - renders == 2
        assert app.state.live.group_count == 2
    # and the groups go when their subscribers do
    async with asyncio.timeout(15):
        while app.state.live.group_count:
            await asyncio.sleep(0.01)
