# mypy: disable-error-code="no-untyped-def"
"""The API-key commands through `gateway.cli.main(argv)`, on the shared database of each backend.

`main` runs in a worker thread (it starts its own event loop), with the
settings in the environment as an operator gives them.
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta

import pytest
from sqlalchemy import select
from test_cli import Run

from gateway import models
from gateway.cli import main
from gateway.repositories.api_keys import find_live_key, get_api_key_by_prefix

PREFIX_LENGTH = 10


@pytest.fixture
def gateway(settings, session_factory, tmp_path, monkeypatch, capsys):
    """`await gateway(*argv)`: runs the command as the `gateway` executable would."""
    for name in [n for n in os.environ if n.startswith("GATEWAY_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("GATEWAY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("GATEWAY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GATEWAY_SECRET_KEY", settings.secret_key.get_secret_value())

    async def run(*argv: str) -> Run:
        capsys.readouterr()
        returncode = 0
        try:
            await asyncio.to_thread(main, list(argv))
        except SystemExit as exit_:
            # What the interpreter does with sys.exit(...) at the top of the program.
            if isinstance(exit_.code, str):
                sys.stderr.write(f"{exit_.code}\n")
                returncode = 1
            else:
                returncode = exit_.code or 0
        captured = capsys.readouterr()
        return Run(returncode, captured.out, captured.err)

    return run


async def _create(gateway, tenant: str, scopes: str = "read,write") -> str:
    run = await gateway("create-api-key", "--tenant", tenant, "--scopes", scopes)
    assert run.returncode == 0, run.stderr
    return run.lines[-1]


def _printed_prefix(key: str) -> str:
    return f"{key[:PREFIX_LENGTH]}..."


async def _stored(session_factory, key: str) -> models.ApiKey:
    async with session_factory() as session:
        return await get_api_key_by_prefix(session=session, prefix=key[:PREFIX_LENGTH])


async def _live(session_factory, key: str, at):
    async with session_factory() as session:
        grant = await find_live_key(session=session, raw_key=key, now=at)
        return grant.principal if grant is not None else None


# --- list-api-keys ----------------------------------------------------------------------------


async def test_list_api_keys_shows_each_key_by_its_prefix_and_never_its_secret(gateway, session_factory):
    # given
    smit = await _create(gateway, "Bakkerij Smit")
    smit_read = await _create(gateway, "Bakkerij Smit", "read")
    jansen = await _create(gateway, "Garage Jansen")
    await gateway("revoke-api-key", _printed_prefix(smit_read))
    # when
    every = await gateway("list-api-keys")
    one = await gateway("list-api-keys", "--tenant", "Garage Jansen")
    unknown = await gateway("list-api-keys", "--tenant", "Nobody")
    # then
    assert every.returncode == 0, every.stderr
    header, *rows = every.lines
    assert header.split() == ["PREFIX", "TENANT", "SCOPES", "CREATED", "LAST", "USED", "EXPIRES", "REVOKED"]
    assert [row.split()[0] for row in rows] == [_printed_prefix(k) for k in (smit, smit_read, jansen)]
    assert "Bakkerij Smit  read,write" in rows[0]
    assert "Bakkerij Smit  read " in rows[1]
    assert rows[0].endswith("-")  # not revoked
    assert rows[1].endswith("UTC")  # revoked, with its time
    async with session_factory() as session:
        hashes = list((await session.execute(select(models.ApiKey.key_hash))).scalars())
    for secret in [smit, smit_read, jansen, *hashes]:
        assert secret not in every.stdout
        assert secret[PREFIX_LENGTH : PREFIX_LENGTH + 12] not in every.stdout
    assert [row.split()[0] for row in one.lines[1:]] == [_printed_prefix(jansen)]
    assert unknown.returncode != 0
    assert unknown.stderr.strip().splitlines() == ["gateway: no tenant is called 'Nobody'"]


# --- revoke-api-key ---------------------------------------------------------------------------


async def test_revoke_api_key_refuses_the_key_from_then_on(gateway, session_factory):
    # given
    key = await _create(gateway, "Bakkerij Smit")
    other = await _create(gateway, "Bakkerij Smit")
    # when
    revoked = await gateway("revoke-api-key", _printed_prefix(key))
    again = await gateway("revoke-api-key", key[:PREFIX_LENGTH])
    # then
    assert revoked.returncode == 0, revoked.stderr
    assert key[:PREFIX_LENGTH] in revoked.stdout
    assert "revoked" in revoked.stdout
    assert again.returncode == 0, again.stderr
    assert "already revoked" in again.stdout
    assert await _live(session_factory, key, models.utcnow()) is None
    assert await _live(session_factory, other, models.utcnow()) is not None


async def test_revoke_api_key_refuses_an_unknown_or_ambiguous_prefix_in_one_line(gateway, session_factory):
    # given: a key, and a second row with its prefix (keys made before prefixes were unique)
    key = await _create(gateway, "Bakkerij Smit")
    stored = await _stored(session_factory, key)
    async with session_factory() as session:
        session.add(
            models.ApiKey(
                tenant_id=stored.tenant_id,
                prefix=stored.prefix,
                key_hash="0" * 64,
                scopes="read",
            )
        )
        await session.commit()
    # when
    unknown = await gateway("revoke-api-key", "gw_nothing...")
    ambiguous = await gateway("revoke-api-key", _printed_prefix(key))
    rotate_ambiguous = await gateway("rotate-api-key", _printed_prefix(key))
    # then: nothing revoked, nothing created
    assert unknown.returncode != 0
    assert unknown.stderr.strip().splitlines() == ["gateway: no API key has the prefix 'gw_nothing'"]
    for run in (ambiguous, rotate_ambiguous):
        assert run.returncode != 0
        assert len(run.stderr.strip().splitlines()) == 1
        assert f"'{key[:PREFIX_LENGTH]}' names more than one API key" in run.stderr
        assert "gw_" not in run.stdout
    async with session_factory() as session:
        keys = list((await session.execute(select(models.ApiKey))).scalars())
    assert len(keys) == 2
    assert all(k.revoked_at is None and k.expires_at is None for k in keys)


# --- rotate-api-key ---------------------------------------------------------------------------


async def test_rotate_api_key_gives_a_new_key_and_the_old_one_works_for_the_grace_period(gateway, session_factory):
    # given
    old = await _create(gateway, "Bakkerij Smit", "read")
    before = models.utcnow()
    # when
    run = await gateway("rotate-api-key", _printed_prefix(old), "--grace-hours", "2")
    after = models.utcnow()
    # then: the new key alone on the last line, shown once
    assert run.returncode == 0, run.stderr
    new = run.lines[-1]
    assert new.startswith("gw_")
    assert new != old
    assert new not in "\n".join(run.lines[:-1])
    expires_at = (await _stored(session_factory, old)).expires_at
    assert before + timedelta(hours=2) <= expires_at <= after + timedelta(hours=2)
    # both work until the old one expires; then only the new one, with the same tenant and scopes
    old_now, new_now = await _live(session_factory, old, after), await _live(session_factory, new, after)
    assert old_now is not None
    assert old_now == new_now
    assert await _live(session_factory, old, expires_at) is None
    assert await _live(session_factory, new, expires_at) == old_now
    assert (await _stored(session_factory, new)).scopes == "read"


async def test_rotate_api_key_defaults_to_a_day_and_refuses_a_revoked_key(gateway, session_factory):
    # given
    key = await _create(gateway, "Bakkerij Smit")
    revoked = await _create(gateway, "Bakkerij Smit")
    await gateway("revoke-api-key", _printed_prefix(revoked))
    before = models.utcnow()
    # when
    rotated = await gateway("rotate-api-key", _printed_prefix(key))
    refused = await gateway("rotate-api-key", _printed_prefix(revoked))
    bad_grace = await gateway("rotate-api-key", _printed_prefix(key), "--grace-hours", "-1")
    # then
    assert rotated.returncode == 0, rotated.stderr
    expires_at = (await _stored(session_factory, key)).expires_at
    assert before + timedelta(hours=24) <= expires_at <= models.utcnow() + timedelta(hours=24)
    assert refused.returncode != 0
    assert refused.stderr.strip().splitlines() == [
        f"gateway: the API key {revoked[:PREFIX_LENGTH]}... is revoked; create a new key instead"
    ]
    assert bad_grace.returncode != 0
    assert "--grace-hours" in bad_grace.stderr
