"""/metrics: its token, the live gauges and close codes, status changes, the persisted-document hook,
and promtool's verdict on the text."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asgi_lifespan import LifespanManager
from conftest import IN_CI, make_settings
from factories import make_tenant, register
from httpx import ASGITransport, AsyncClient
from prometheus_client.parser import text_string_to_metric_families
from waiting import eventually

from gateway.app import create_app
from gateway.metrics import MAX_OPERATION_LABELS, OTHER_OPERATION, Metrics

# The live tests' real server and websocket client (tests/live is not a package).
sys.path.insert(0, str(Path(__file__).parents[1] / "live"))
from live_helpers import CHANGES, Client, listening, register_via_api, serving  # noqa: E402

REGISTER = """
mutation Register($input: RegisterEmailInput!) { registerEmail(input: $input) { email { id } } }
"""
RECORD = """
mutation Record($input: RecordEmailEventInput!) { recordEmailEvent(input: $input) { id emailStatus } }
"""


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text, None when absent."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


POSTMARK = ("postmark-user", "a-long-postmark-password")


@pytest.fixture
async def gateway(backend, tmp_path, session_factory):  # type: ignore[no-untyped-def]
    settings = make_settings(
        backend,
        tmp_path,
        metrics_token="scrape-token-0123456789",
        postmark_username=POSTMARK[0],
        postmark_password=POSTMARK[1],
    )
    app = create_app(settings)
    async with (
        LifespanManager(app) as manager,
        AsyncClient(transport=ASGITransport(app=manager.app), base_url="http://testserver") as client,
    ):
        yield client


async def scrape(client: AsyncClient) -> str:
    response = await client.get("/metrics", headers={"Authorization": "Bearer scrape-token-0123456789"})
    assert response.status_code == 200
    return response.text


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", "Basic c2NyYXBlLXRva2Vu", "Bearer "])
async def test_metrics_need_the_token_when_one_is_set(gateway, authorization):  # type: ignore[no-untyped-def]
    # when
    headers = {"Authorization": authorization} if authorization else {}
    response = await gateway.get("/metrics", headers=headers)
    # then
    assert response.status_code == 401
    assert "gateway_" not in response.text


async def test_metrics_are_open_without_a_token(client):  # type: ignore[no-untyped-def]
    # when
    response = await client.get("/metrics")
    # then
    assert response.status_code == 200
    assert "gateway_status_changes" in response.text


async def test_status_changes_are_counted_by_status_category_and_source(gateway, session_factory):  # type: ignore[no-untyped-def]
    # given: an e-mail registered through the API (its first status: SENT)
    tenant = await make_tenant(session_factory)
    registered = await gateway.post(
        "/graphql",
        json={
            "query": REGISTER,
            "variables": {"input": {"externalId": "m-1", "subject": "Invoice", "recipient": "a@example.com"}},
        },
        headers=tenant.auth,
    )
    email_id = registered.json()["data"]["registerEmail"]["email"]["id"]
    # when: it fails, and the same failure is recorded again (no change the second time)
    failure = {
        "emailId": email_id,
        "status": "DELIVERY_FAILED",
        "occurredAt": "2026-11-01T10:00:00Z",
        "eventKey": "bounce-1",
        "failureCategory": "HARD_BOUNCE",
    }
    for _ in range(2):
        answer = await gateway.post(
            "/graphql", json={"query": RECORD, "variables": {"input": failure}}, headers=tenant.auth
        )
        assert answer.json()["data"]["recordEmailEvent"]["emailStatus"] == "DELIVERY_FAILED", answer.text
    # then
    text = await scrape(gateway)
    assert sample(text, "gateway_status_changes_total", status="SENT", failure_category="", source="registration") == 1
    assert (
        sample(
            text, "gateway_status_changes_total", status="DELIVERY_FAILED", failure_category="HARD_BOUNCE", source="api"
        )
        == 1
    )


async def test_status_changes_from_webhooks_are_counted_with_their_provider(gateway, session_factory):  # type: ignore[no-untyped-def]
    # given: an e-mail registered by the sending application
    tenant = await make_tenant(session_factory)
    await register(session_factory, tenant, provider_message_id="883953f4-6105-42a2-a16a-77a8eac79483")
    delivery = {
        "RecordType": "Delivery",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Recipient": "client@example.com",
        "DeliveredAt": "2026-11-01T10:00:00Z",
        "Details": "ok",
        "Metadata": {},
    }
    # when: the provider posts its delivery, twice (a retry changes nothing)
    for _ in range(2):
        assert (await gateway.post("/webhooks/postmark", json=delivery, auth=POSTMARK)).status_code == 200
    # then
    text = await scrape(gateway)
    assert sample(text, "gateway_status_changes_total", status="DELIVERED", failure_category="", source="postmark") == 1


def test_persisted_operations_are_timed_by_name_with_bounded_labels() -> None:
    # given
    metrics = Metrics()
    # when: the hook the persisted documents call, with more names than the bound
    metrics.observe_persisted_operation("EmailsScreen", 0.02)
    metrics.observe_persisted_operation("EmailsScreen", 0.04)
    for n in range(MAX_OPERATION_LABELS + 5):
        metrics.observe_persisted_operation(f"Op{n}", 0.001)
    # then
    text = metrics.render().decode()
    name = "gateway_persisted_operation_duration_seconds_count"
    assert sample(text, name, operation="EmailsScreen") == 2
    assert sample(text, name, operation=OTHER_OPERATION) == 6
    operations = {
        s.labels["operation"]
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }
    assert len(operations) == MAX_OPERATION_LABELS + 1


def test_the_feed_lag_is_the_age_of_the_newest_change_delivered() -> None:
    # given
    metrics = Metrics()
    # when
    metrics.delivered(datetime.now(UTC) - timedelta(seconds=3))
    # then
    text = metrics.render().decode()
    assert 3 <= sample(text, "gateway_change_feed_lag_seconds") < 10  # type: ignore[operator]
    assert 0 <= sample(text, "gateway_change_feed_poll_age_seconds") < 60  # type: ignore[operator]


async def test_websockets_subscriptions_and_close_codes(backend, tmp_path, session_factory):  # type: ignore[no-untyped-def]
    # given: a served gateway and a subscriber
    tenant = await make_tenant(session_factory)
    settings = make_settings(backend, tmp_path, purge_interval_seconds=0, ws_init_timeout_seconds=1)
    async with serving(settings) as (address, app):
        metrics = app.state.metrics
        async with Client.connect(address, tenant.key) as client:
            await client.subscribe("1", CHANGES)
            await listening(app, 1)
            # when: a change reaches it
            await register_via_api(address, tenant.key, "w-1")
            await client.next_data("1")
            during = metrics.render().decode()
        # and a socket that breaks the protocol is closed by the server (4400)
        async with Client.connect(address, tenant.key) as bad:
            await bad.send({"type": "subscribe", "id": 7, "payload": {}})
            code, _ = await bad.closed_with()
            assert code == 4400
        await _settled(app)
        after = metrics.render().decode()
    # then
    assert sample(during, "gateway_websockets_open") == 1
    assert sample(during, "gateway_subscriptions_active") == 1
    assert 0 <= sample(during, "gateway_change_feed_lag_seconds") < 30  # type: ignore[operator]
    assert sample(after, "gateway_websockets_open") == 0
    assert sample(after, "gateway_subscriptions_active") == 0
    assert sample(after, "gateway_websocket_closes_total", code="1000") == 1
    assert sample(after, "gateway_websocket_closes_total", code="4400") == 1


async def _settled(app) -> None:  # type: ignore[no-untyped-def]
    await eventually(
        lambda: (
            app.state.feed.listener_count == 0
            and sample(app.state.metrics.render().decode(), "gateway_websockets_open") == 0
        ),
        what="the closed sockets' listeners and gauges went back to zero",
    )


def _promtool() -> str | None:
    found = shutil.which("promtool")
    if found is None and IN_CI and shutil.which("apt-get") and os.geteuid() == 0:
        # CI's machine is fresh: Debian's prometheus package ships promtool.
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", "prometheus"],
            check=False,
            capture_output=True,
            timeout=600,
        )
        found = shutil.which("promtool")
    return found


async def test_promtool_accepts_the_metrics(gateway, session_factory):  # type: ignore[no-untyped-def]
    # given: every family has samples (a request, a change)
    promtool = _promtool()
    if promtool is None:
        if IN_CI:
            pytest.fail("promtool is missing (Debian package prometheus)")
        pytest.skip("promtool is not installed (Debian package prometheus)")
    tenant = await make_tenant(session_factory)
    await gateway.post(
        "/graphql",
        json={
            "query": REGISTER,
            "variables": {"input": {"externalId": "p-1", "subject": "Invoice", "recipient": "a@example.com"}},
        },
        headers=tenant.auth,
    )
    # when
    text = await scrape(gateway)
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    # then: no error and no lint warning
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == "" and checked.stderr.strip() == "", checked.stdout + checked.stderr
