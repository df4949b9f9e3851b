"""GraphiQL in a real headless browser, against a real gateway with the demo data, offline.

The browser is Debian's `chromium`, driven by Playwright (which cannot download
its own browsers here). When chromium is missing the set-up installs it with
apt-get under CI=true (and fails if it cannot); elsewhere the test is skipped
with the command to run. A screenshot is left in tests/artifacts/graphiql.png.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import IN_CI
from waiting import eventually_blocking

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
GATEWAY = Path(sys.executable).with_name("gateway")
PATIENCE = 60.0  # seconds: generous on a loaded 2-core machine
EMAILS = "query Emails($first: Int) { emails(first: $first) { totalCount edges { node { subject emailStatus } } } }"
VARIABLES = '{"first": 3}'


def _missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the browser test must run)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's chromium, installed first under CI."""
    if not CHROMIUM.exists() and IN_CI and shutil.which("apt-get") and os.geteuid() == 0:
        for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
            subprocess.run(command, check=False, capture_output=True, timeout=900)  # noqa: S603  (fixed arguments)
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} is missing: apt-get install -y chromium")
    return CHROMIUM


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _gateway(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([str(GATEWAY), *args], env=env, check=True, capture_output=True, text=True, timeout=PATIENCE)  # noqa: S603
    return done.stdout


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """`gateway serve` on a free port with the demo data; (its URL, an API key)."""
    data = tmp_path_factory.mktemp("graphiql")
    port = _free_port()
    env = {
        **os.environ,
        "GATEWAY_DATA_DIR": str(data),
        "GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{data / 'gateway.db'}",
        "GATEWAY_ENV": "development",
        "GATEWAY_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "GATEWAY_BROKER_URL": "memory://",
    }
    _gateway(env, "migrate")
    _gateway(env, "seed-demo", "--emails", "20")
    key = _gateway(env, "create-api-key", "--tenant", "Demo Accountants").strip().splitlines()[-1]
    process = subprocess.Popen(  # noqa: S603
        [str(GATEWAY), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"gateway serve exited: {process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        eventually_blocking(up, what="gateway serve answering /healthz", within=PATIENCE, every=0.1)
        yield url, key
    finally:
        process.terminate()
        process.wait(timeout=PATIENCE)
        process.stderr.close()  # type: ignore[union-attr]


def _replace_text(page, selector: str, text: str) -> None:  # type: ignore[no-untyped-def]
    # insert_text types as an input method does: no key presses, so the editor's
    # bracket and quote auto-closing adds nothing to what is typed.
    page.locator(selector).click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(text)


def test_graphiql_runs_a_query_with_the_key_from_the_headers_pane_offline(chromium, server) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect, sync_playwright

    # given
    url, key = server
    direct = httpx.post(
        f"{url}/graphql",
        json={"query": EMAILS, "variables": {"first": 3}},
        headers={"Authorization": f"Bearer {key}"},
        timeout=PATIENCE,
    ).json()["data"]["emails"]
    requests: list[str] = []
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("request", lambda request: requests.append(request.url))
            page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: problems.append(str(error)))
            # when
            answer = page.goto(f"{url}/graphql", wait_until="networkidle")
            expect(page.locator(".graphiql-container .graphiql-execute-button")).to_be_visible(timeout=PATIENCE * 1000)
            page.locator(".graphiql-editor-tools button[data-name=headers]").click()
            _replace_text(
                page,
                ".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror",
                f'{{"Authorization": "Bearer {key}"}}',
            )
            page.locator(".graphiql-editor-tools button[data-name=variables]").click()
            _replace_text(page, ".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror", VARIABLES)
            _replace_text(page, ".graphiql-query-editor .CodeMirror", EMAILS)
            page.locator(".graphiql-execute-button").click()
            result = page.locator(".graphiql-response")
            expect(result).to_contain_text(f'"totalCount": {direct["totalCount"]}', timeout=PATIENCE * 1000)
            # A dialog adds a <style> element: the policy must allow it.
            page.get_by_label("Open settings dialog").click()
            expect(page.get_by_role("dialog")).to_be_visible()
            page.keyboard.press("Escape")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "graphiql.png"))
            shown = result.inner_text()
        finally:
            browser.close()
    # then
    assert answer is not None
    policy = answer.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "script-src 'self'" in policy
    assert direct["totalCount"] > 0
    assert all(edge["node"]["subject"] in shown for edge in direct["edges"])
    assert requests
    assert [r for r in requests if urlsplit(r).hostname != "127.0.0.1" and not r.startswith("data:")] == []
    # A script or style the policy blocked would show here (and a CDN would be blocked).
    assert [p for p in problems if "401" not in p] == []
