"""Settings from `GATEWAY_*` environment variables. No I/O at import.

`get_settings()` is cached for the process; `create_app(settings)` and the CLI take
an explicit instance, so tests build their own and never touch the environment.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, AnyHttpUrl, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["Settings", "get_settings"]

_PLACEHOLDERS = {"changeme", "change-me", "secret", "password", "default", "test", "xxx"}
_SECRET_FILE = "secret_key"  # noqa: S105  a file name, not a secret
_MIN_SECRET = 32
_ORIGIN = re.compile(r"https?://[a-z0-9.-]+(:[0-9]{1,5})?|https?://\[[0-9a-f:]+\](:[0-9]{1,5})?")


class Settings(BaseSettings):
    """Every setting of the gateway; each is documented in the README's table."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore", frozen=True)

    data_dir: Path = Field(default=Path("data"), description="Folder for the SQLite file and the generated secret key.")
    database_url: str = Field(default="", description="SQLAlchemy URL; empty means SQLite in data_dir.")
    secret_key: SecretStr | None = Field(
        default=None, description="Signs tracking tokens; generated and kept in data_dir when unset."
    )
    public_url: AnyHttpUrl = Field(
        default=AnyHttpUrl("http://127.0.0.1:8000"), description="Base of tracking-image URLs."
    )
    env: Literal["development", "production"] = Field(
        default="development",
        description="production turns off introspection, suggestions and GraphiQL unless each is turned on.",
    )
    debug: bool = False
    fast_path: bool = True
    key_cache_seconds: float = Field(default=10.0, ge=0, le=3600)
    # None: follow `env` (on in development, off in production).
    introspection: bool | None = None
    suggestions: bool | None = None
    graphiql: bool | None = None
    max_page_size: int = Field(default=100, ge=1, le=10_000)
    max_query_depth: int = Field(default=12, ge=2, le=100)
    max_aliases: int = Field(default=30, ge=1, le=1000)
    max_tokens: int = Field(default=2000, ge=50, le=100_000)
    max_query_cost: int = Field(default=10_000, ge=1, le=10_000_000)
    max_list_size: int = Field(default=100, ge=1, le=10_000)
    max_execution_seconds: float = Field(default=5.0, gt=0, le=600)
    history_days: int = Field(default=30, ge=1, le=3650)
    purge_interval_seconds: int = Field(default=3600, ge=0, le=86_400 * 7)  # 0: no background purge
    broker_url: str = "memory://"
    broker_channel_prefix: str = Field(default="", max_length=100)
    subscriber_queue_size: int = Field(default=1000, ge=1, le=1_000_000)
    feed_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    ws_init_timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    max_subscriptions_per_connection: int = Field(default=20, ge=1, le=1000)
    legacy_ws: bool = False
    pending_event_hours: int = Field(default=72, ge=1, le=24 * 60)
    sendgrid_verification_key: SecretStr | None = None
    mailgun_signing_key: SecretStr | None = None
    postmark_username: str | None = None
    postmark_password: SecretStr | None = None
    ses_topic_arns: Annotated[list[str], NoDecode] = Field(default_factory=list)
    resend_webhook_secret: SecretStr | None = None
    metrics_token: SecretStr | None = Field(
        default=None, description="When set, /metrics requires `Authorization: Bearer <token>`."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # OpenTelemetry's own variable, as every OTLP exporter reads it; unset: no tracing at all.
    otlp_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_ENDPOINT", "otlp_endpoint"),
        description="OTLP/HTTP collector; traces are exported there when set.",
    )
    # Off by default everywhere (the demo and local tools send ad-hoc queries);
    # production deployments that register their clients' documents turn it on.
    trusted_documents_only: bool = False
    persisted_queries_cache_size: int = Field(default=1000, ge=0, le=1_000_000)
    # Browser front-ends on other origins; empty: no CORS headers at all.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    cors_max_age_seconds: int = Field(default=600, ge=0, le=86_400)
    compression_min_bytes: int = Field(default=1000, ge=0, le=10 * 1024 * 1024)  # 0: never compress

    @field_validator("ses_topic_arns", mode="before")
    @classmethod
    def _split_arns(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin == "*":
                # Clients send their API key: any site could then call the API as
                # its visitors with whatever key their browser holds.
                raise ValueError(
                    "GATEWAY_CORS_ORIGINS must list exact origins, not '*' "
                    "(the API is called with an Authorization header)"
                )
            if not _ORIGIN.fullmatch(origin):
                # A browser's Origin header is exactly scheme://host[:port]; anything
                # else (a path, a trailing slash) would silently never match.
                raise ValueError(
                    f"GATEWAY_CORS_ORIGINS entry {origin!r} is not an origin like https://app.example.com[:port]"
                )
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        if not value:
            return value
        scheme, sep, rest = value.partition("://")
        if not sep:
            raise ValueError(f"GATEWAY_DATABASE_URL {value!r} is not a URL")
        drivers = {
            "sqlite": "sqlite+aiosqlite",
            "sqlite+aiosqlite": "sqlite+aiosqlite",
            "postgresql": "postgresql+asyncpg",
            "postgres": "postgresql+asyncpg",
            "postgresql+asyncpg": "postgresql+asyncpg",
        }
        if scheme not in drivers:
            raise ValueError(
                f"GATEWAY_DATABASE_URL scheme {scheme!r} is not supported "
                "(use sqlite+aiosqlite:// or postgresql+asyncpg://)"
            )
        return f"{drivers[scheme]}://{rest}"

    @field_validator("secret_key")
    @classmethod
    def _check_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        raw = value.get_secret_value().strip()
        if raw.lower() in _PLACEHOLDERS or len(raw) < _MIN_SECRET or len(set(raw)) < 8:
            raise ValueError("GATEWAY_SECRET_KEY must be at least 32 characters, not a placeholder, and not repetitive")
        return value

    @field_validator("broker_url")
    @classmethod
    def _check_broker(cls, value: str) -> str:
        if value.partition("://")[0] not in {"memory", "redis", "rediss"}:
            raise ValueError(f"GATEWAY_BROKER_URL {value!r} must start with memory://, redis:// or rediss://")
        return value

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        # frozen model: defaults that depend on other settings are set once here.
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite+aiosqlite:///{self.data_dir / 'gateway.db'}")
        development = self.env == "development"
        for name in ("introspection", "suggestions", "graphiql"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, development)
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def signing_key(self) -> bytes:
        """The key that signs tracking tokens: the setting, or one kept in data_dir.

        A random key is generated on first use and written with mode 0600, so a
        fresh install is safe without configuration and keeps its tokens valid
        across restarts. There is never a fixed default.
        """
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        path = self.data_dir / _SECRET_FILE
        for _ in range(3):
            with contextlib.suppress(FileNotFoundError):
                key = path.read_text().strip()
                if len(key) >= _MIN_SECRET:
                    return key.encode()
                path.unlink()  # empty or cut short (a crash while writing): never use it
            self._write_new_key(path)
        raise RuntimeError(f"could not create a signing key in {self.data_dir}")

    def _write_new_key(self, path: Path) -> None:
        # Written whole to a private temporary file, then linked into place: a
        # reader sees no file or a complete key, and of two processes starting
        # at once the first link wins and both use its key.
        self.data_dir.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        descriptor = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)


@lru_cache
def get_settings() -> Settings:
    return Settings()
