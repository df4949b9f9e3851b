"""A plain `pip install` of the wheel migrates, creates keys and serves, away from the repository.

The container build's usual lines, for real: build the wheel, install it with its
dependencies in a fresh virtualenv outside the repository, then run the installed
`gateway` command from an empty folder. Nothing of the repository is importable there,
so the migrations must travel inside the package.

This module does not use the `backend` fixture: it runs once, not once per backend
(it drives SQLite and PostgreSQL itself). It takes a minute or two (pip resolves the
dependencies, from its cache when it can).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from conftest import PG_HOST, PG_PORT, _pg_admin, need_server
from waiting import eventually

REPO = Path(__file__).resolve().parents[2]
# What the wheel is built from: the working tree's files, not its build leftovers.
_NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "data",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    ".hypothesis",
    "node_modules",
    "bench",
)
INSTALL_TIMEOUT = 600  # seconds: pip may download every dependency on a cold cache
PATIENCE = 30.0  # seconds for the server to be ready: generous on a loaded 2-core machine

REGISTER = """
mutation Register($input: RegisterEmailInput!) {
  registerEmail(input: $input) { email { id subject emailStatus } }
}
"""
EMAILS = """
query Emails($first: Int!) {
  emails(first: $first) { totalCount edges { node { subject emailStatus } } }
}
"""


def _run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(  # noqa: S603  (fixed commands)
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"{' '.join(map(str, command))} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `bin` folder of a fresh virtualenv holding the wheel built from this repository."""
    # PostgreSQL is checked first: no minute-long install for a test that would skip.
    need_server("PostgreSQL", PG_HOST, PG_PORT)
    root = tmp_path_factory.mktemp("install")
    source, wheels, venv = root / "source", root / "wheels", root / "venv"
    shutil.copytree(REPO, source, ignore=_NOT_SOURCE)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    _run(*pip, "wheel", "--no-deps", "--wheel-dir", wheels, source, cwd=root)
    (wheel,) = wheels.glob("status_gateway-*.whl")
    _run(sys.executable, "-m", "venv", venv, cwd=root)
    _run(
        venv / "bin" / "python",
        "-m",
        "pip",
        "--disable-pip-version-check",
        "--no-input",
        "install",
        "--progress-bar",
        "off",
        wheel,
        cwd=root,
    )
    return venv / "bin"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(folder: Path, **variables: str) -> dict[str, str]:
    """The caller's environment without any gateway setting or Python path, plus `variables`."""
    dropped = ("GATEWAY_", "PYTHONPATH", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env["GATEWAY_DATA_DIR"] = str(folder / "data")
    env.update(variables)
    return env


def test_the_installed_package_is_the_wheel_not_the_repository(installed: Path, tmp_path: Path) -> None:
    # given: an empty folder outside the repository
    # when
    where = _run(
        installed / "python", "-c", "import gateway.cli; print(gateway.cli.__file__)", cwd=tmp_path, env=_env(tmp_path)
    )
    # then
    assert "site-packages" in where
    assert not Path(where.strip()).is_relative_to(REPO)


def test_the_installed_command_migrates_sqlite(installed: Path, tmp_path: Path) -> None:
    # given: no database URL, so SQLite in the data folder
    env = _env(tmp_path)
    # when
    out = _run(installed / "gateway", "migrate", cwd=tmp_path, env=env)
    # then
    assert out.strip() == "database is up to date"
    assert (tmp_path / "data" / "gateway.db").stat().st_size > 0


async def test_the_installed_command_migrates_postgresql_creates_a_key_and_serves(
    installed: Path, tmp_path: Path
) -> None:
    # given: a fresh PostgreSQL database
    name = f"gateway_install_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    await _pg_admin(f'CREATE DATABASE "{name}"')
    port = _free_port()
    env = _env(
        tmp_path,
        GATEWAY_DATABASE_URL=f"postgresql://postgres@{PG_HOST}:{PG_PORT}/{name}",
        GATEWAY_SECRET_KEY="install-test-secret-key-0123456789-abcdef",
        GATEWAY_PURGE_INTERVAL_SECONDS="0",
    )
    server = None
    try:
        # when
        migrated = _run(installed / "gateway", "migrate", cwd=tmp_path, env=env)
        created = _run(installed / "gateway", "create-api-key", "--tenant", "Installed", cwd=tmp_path, env=env)
        key = created.strip().splitlines()[-1]
        with (tmp_path / "serve.log").open("wb") as log:
            server = subprocess.Popen(  # noqa: S603
                [installed / "gateway", "serve", "--port", str(port)],
                cwd=tmp_path,
                env=env,
                stdout=log,
                stderr=log,
            )
        address = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=address, headers={"Authorization": f"Bearer {key}"}) as http:

            async def ready() -> bool:
                assert server.poll() is None, (tmp_path / "serve.log").read_text()
                try:
                    return (await http.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(ready, what="the installed gateway answering /readyz", within=PATIENCE, every=0.1)
            registered = await http.post(
                "/graphql",
                json={
                    "query": REGISTER,
                    "variables": {
                        "input": {
                            "externalId": "installed-1",
                            "subject": "Invoice 2026-001",
                            "recipient": "a@example.com",
                        }
                    },
                },
            )
            listed = await http.post("/graphql", json={"query": EMAILS, "variables": {"first": 5}})
        # then
        assert migrated.strip() == "database is up to date"
        assert key.startswith("gw_")
        assert registered.status_code == 200, registered.text
        assert "errors" not in registered.json(), registered.text
        assert listed.status_code == 200, listed.text
        assert listed.json() == {
            "data": {
                "emails": {
                    "totalCount": 1,
                    "edges": [
                        {"node": {"subject": "Invoice 2026-001", "emailStatus": "SENT"}},
                    ],
                }
            }
        }
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=PATIENCE)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
