"""Settings: defaults, URL rewriting, validation, the generated signing key, the environment."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gateway.config import Settings

GOOD_SECRET = "a-real-secret-key-that-is-long-enough-0123456789"
PLACEHOLDERS = ["changeme", "change-me", "secret", "password", "default", "test", "xxx", "CHANGEME"]


@pytest.fixture(autouse=True)
def _no_gateway_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts without GATEWAY_* variables (the developer's shell may set some)."""
    for name in list(os.environ):
        if name.startswith("GATEWAY_"):
            monkeypatch.delenv(name)


def error_text(error: pytest.ExceptionInfo[ValidationError]) -> str:
    return "\n".join(str(e["msg"]) for e in error.value.errors())


# --- defaults ---------------------------------------------------------------------------------


def test_defaults_are_an_sqlite_file_in_the_data_dir_and_the_memory_broker(tmp_path: Path) -> None:
    # given
    data_dir = tmp_path / "somewhere"
    # when
    settings = Settings(data_dir=data_dir)
    # then
    assert settings.database_url == f"sqlite+aiosqlite:///{data_dir / 'gateway.db'}"
    assert settings.is_sqlite
    assert settings.broker_url == "memory://"
    assert settings.max_page_size == 100
    assert settings.history_days == 30
    assert settings.secret_key is None
    assert settings.debug is False
    assert settings.legacy_ws is False
    assert settings.ses_topic_arns == []


def test_the_default_data_dir_is_data_relative_to_the_working_directory() -> None:
    # given / when
    settings = Settings()
    # then
    assert settings.data_dir == Path("data")
    assert settings.database_url == f"sqlite+aiosqlite:///{Path('data') / 'gateway.db'}"


def test_creating_settings_does_no_io(tmp_path: Path) -> None:
    # given
    data_dir = tmp_path / "not-yet"
    # when
    Settings(data_dir=data_dir)
    # then: neither the folder nor a key file appears before the key is asked for
    assert not data_dir.exists()


# --- database URL -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_url", "expected"),
    [
        ("postgresql://u:p@db.example:5432/gw", "postgresql+asyncpg://u:p@db.example:5432/gw"),
        ("postgres://u@db.example/gw", "postgresql+asyncpg://u@db.example/gw"),
        ("postgresql+asyncpg://u@db.example/gw", "postgresql+asyncpg://u@db.example/gw"),
        ("sqlite:////var/lib/gw.db", "sqlite+aiosqlite:////var/lib/gw.db"),
        ("sqlite+aiosqlite:///gw.db", "sqlite+aiosqlite:///gw.db"),
    ],
)
def test_database_urls_get_the_async_driver(given_url: str, expected: str) -> None:
    # given / when
    settings = Settings(database_url=given_url)
    # then
    assert settings.database_url == expected
    assert settings.is_sqlite == expected.startswith("sqlite")


@pytest.mark.parametrize(
    "bad_url",
    [
        "mysql://x",
        "mysql+pymysql://u@h/db",
        "postgresql+psycopg2://u@h/db",
        "oracle://h",
        "not a url",
        "localhost:5432/gw",
    ],
)
def test_unsupported_database_urls_are_refused_naming_the_setting(bad_url: str) -> None:
    # given / when
    with pytest.raises(ValidationError) as error:
        Settings(database_url=bad_url)
    # then
    assert "GATEWAY_DATABASE_URL" in error_text(error)


# --- secret key -------------------------------------------------------------------------------


@pytest.mark.parametrize("placeholder", PLACEHOLDERS)
def test_placeholder_secrets_are_refused(placeholder: str) -> None:
    # given / when
    with pytest.raises(ValidationError) as error:
        Settings(secret_key=placeholder)
    # then
    assert "GATEWAY_SECRET_KEY" in error_text(error)


@hypothesis_settings(database=None, max_examples=60)
@given(st.text(max_size=31))
def test_any_secret_shorter_than_32_characters_is_refused(short: str) -> None:
    # given / when
    with pytest.raises(ValidationError) as error:
        Settings(secret_key=short)
    # then
    assert "GATEWAY_SECRET_KEY" in error_text(error)


@hypothesis_settings(database=None, max_examples=60)
@given(st.text(min_size=32, max_size=200).filter(lambda s: len(s.strip()) >= 32 and len(set(s.strip())) >= 8))
def test_any_varied_secret_of_32_characters_or_more_is_used_as_is(secret: str) -> None:
    # given
    settings = Settings(secret_key=secret, data_dir=Path("/nonexistent/never-written"))
    # when
    key = settings.signing_key()
    # then
    assert key == secret.encode()


@pytest.mark.parametrize("secret", ["a" * 40, " " * 40, "ab" * 20, "  short-but-padded-with-spaces  " + " " * 10])
def test_blank_or_repetitive_secrets_are_refused(secret: str) -> None:
    with pytest.raises(ValidationError) as error:
        Settings(secret_key=secret)
    assert "GATEWAY_SECRET_KEY" in error_text(error)


def test_an_explicit_secret_is_used_and_no_key_file_is_written(tmp_path: Path) -> None:
    # given
    settings = Settings(secret_key=GOOD_SECRET, data_dir=tmp_path / "data")
    # when
    key = settings.signing_key()
    # then
    assert key == GOOD_SECRET.encode()
    assert not (tmp_path / "data").exists()


# --- the generated signing key ----------------------------------------------------------------


def test_without_a_secret_a_key_file_is_generated_with_mode_0600(tmp_path: Path) -> None:
    # given
    data_dir = tmp_path / "data"
    settings = Settings(data_dir=data_dir)
    # when
    key = settings.signing_key()
    # then
    key_file = data_dir / "secret_key"
    assert key_file.is_file()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().strip().encode() == key
    assert len(key) >= 32


def test_the_generated_key_is_stable_across_calls_and_instances(tmp_path: Path) -> None:
    # given
    first = Settings(data_dir=tmp_path)
    key = first.signing_key()
    # when
    again = first.signing_key()
    from_a_restart = Settings(data_dir=tmp_path).signing_key()
    # then
    assert again == key
    assert from_a_restart == key


def test_two_data_dirs_get_different_keys(tmp_path: Path) -> None:
    # given
    one = Settings(data_dir=tmp_path / "one")
    two = Settings(data_dir=tmp_path / "two")
    # when
    keys = {one.signing_key(), two.signing_key()}
    # then
    assert len(keys) == 2


def test_an_empty_key_file_is_never_used_as_the_signing_key(tmp_path: Path) -> None:
    # given: the state a crash between creating and filling the key file leaves behind
    (tmp_path / "secret_key").touch(mode=0o600)
    settings = Settings(data_dir=tmp_path)
    # when
    try:
        key = settings.signing_key()
    except (ValueError, RuntimeError, OSError):
        return  # refusing to start is a correct answer too
    # then: an empty (or short) key would let anyone forge tracking tokens
    assert len(key) >= 32


# --- other settings ---------------------------------------------------------------------------


def test_ses_topic_arns_are_split_on_commas_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given
    monkeypatch.setenv("GATEWAY_SES_TOPIC_ARNS", "a, b")
    # when
    settings = Settings()
    # then
    assert settings.ses_topic_arns == ["a", "b"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a, b", ["a", "b"]),
        (
            " arn:aws:sns:eu-west-1:1:x ,, arn:aws:sns:eu-west-1:1:y , ",
            ["arn:aws:sns:eu-west-1:1:x", "arn:aws:sns:eu-west-1:1:y"],
        ),
        ("", []),
    ],
)
def test_ses_topic_arns_are_split_on_commas(raw: str, expected: list[str]) -> None:
    # given / when
    settings = Settings(ses_topic_arns=raw)  # type: ignore[arg-type]
    # then
    assert settings.ses_topic_arns == expected


def test_environment_variables_are_read_with_the_gateway_prefix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # given
    monkeypatch.setenv("GATEWAY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("GATEWAY_DATABASE_URL", "postgres://u@db.example/gw")
    monkeypatch.setenv("GATEWAY_MAX_PAGE_SIZE", "250")
    monkeypatch.setenv("GATEWAY_HISTORY_DAYS", "7")
    monkeypatch.setenv("GATEWAY_DEBUG", "true")
    monkeypatch.setenv("GATEWAY_BROKER_URL", "redis://cache.example:6379/0")
    monkeypatch.setenv("GATEWAY_SECRET_KEY", GOOD_SECRET)
    monkeypatch.setenv("MAX_ALIASES", "3")  # no prefix: not a gateway setting
    # when
    settings = Settings()
    # then
    assert settings.data_dir == tmp_path
    assert settings.database_url == "postgresql+asyncpg://u@db.example/gw"
    assert settings.max_page_size == 250
    assert settings.history_days == 7
    assert settings.debug is True
    assert settings.broker_url == "redis://cache.example:6379/0"
    assert settings.signing_key() == GOOD_SECRET.encode()
    assert settings.max_aliases == 30


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GATEWAY_DATABASE_URL", "mysql://x"),
        ("GATEWAY_SECRET_KEY", "changeme"),
        ("GATEWAY_BROKER_URL", "amqp://rabbit"),
    ],
)
def test_bad_values_from_the_environment_are_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    # given
    monkeypatch.setenv(variable, value)
    # when
    with pytest.raises(ValidationError) as error:
        Settings()
    # then
    assert variable in error_text(error)


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_page_size", 0), ("max_page_size", -3), ("max_page_size", 10_001), ("history_days", 0)],
)
def test_out_of_range_numbers_are_refused(field: str, value: int) -> None:
    # given / when
    with pytest.raises(ValidationError) as error:
        Settings(**{field: value})  # type: ignore[arg-type]
    # then
    assert error.value.errors()[0]["loc"] == (field,)


def test_settings_are_frozen() -> None:
    # given
    settings = Settings()
    # when / then
    with pytest.raises(ValidationError):
        settings.max_page_size = 5  # type: ignore[misc]
    assert settings.max_page_size == 100
