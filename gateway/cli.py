"""The `gateway` command: serve, migrate, seed-demo, the API keys (create, list, rotate,
revoke), purge-history, export-schema."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import ValidationError
from sqlalchemy.engine import make_url

from gateway.config import Settings
from gateway.enums import Scope
from gateway.errors import DomainError, NotFound

if TYPE_CHECKING:
    from gateway import models
    from gateway.db import SessionFactory

__all__ = ["main", "serving_app"]

_T = TypeVar("_T")


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        lines = [f"  GATEWAY_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in error.errors()]
        sys.exit("invalid settings:\n" + "\n".join(lines))


def _reason(error: BaseException) -> str:
    # SQLAlchemy wraps the driver's error in a message with a link; the driver's is enough.
    cause = getattr(error, "orig", None) or error
    return " ".join(str(cause).split()) or type(cause).__name__


def _reach(settings: Settings) -> None:
    """Exit with one line on stderr when the database cannot be reached.

    Every command that needs the database connects here first, so that a server
    that is down, a wrong password or an unwritable SQLite folder reads as one
    line naming the URL (password hidden) and the reason, not as a driver's traceback.
    """
    from gateway.db import create_engine

    async def connect() -> None:
        engine = create_engine(settings)
        try:
            async with engine.connect():
                pass
        finally:
            await engine.dispose()

    try:
        asyncio.run(connect())
    except Exception as error:
        url = make_url(settings.database_url).render_as_string(hide_password=True)
        sys.exit(f"gateway: cannot reach the database {url}: {_reason(error)}")


def _migrated(settings: Settings) -> Settings:
    """The settings, once their database is reachable and has every migration."""
    from gateway.migrations import upgrade

    _reach(settings)
    upgrade(settings)
    return settings


# How long a rotated key keeps working beside its successor, unless told otherwise:
# a working day for every client to pick up the new key.
DEFAULT_GRACE_HOURS = 24.0

# The largest websocket message accepted: a subscribe message is a few KiB.
WS_MAX_SIZE = 256 * 1024


# Young-generation collections every 50,000 allocations rather than 700: with
# thousands of live subscriptions, each burst of deliveries otherwise promotes its
# short-lived objects to the old generation, and the full collections that follow
# scan every subscription's objects (200+ ms at 1,000 subscribers; bench/live.py).
GC_THRESHOLD = 50_000


def _tuned_gc(app: Any) -> Any:
    """The app, with the collector tuned for a long-running server once it is up.

    What exists after start-up (modules, the schema, the pools) is frozen out of
    every later collection, and young collections are rarer.
    """
    started = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Any]:
        async with started(application) as state:
            gc.collect()
            gc.freeze()
            gc.set_threshold(GC_THRESHOLD, 10, 10)
            yield state

    app.router.lifespan_context = lifespan
    return app


def serving_app() -> Any:
    """The app `serve` runs, built from the environment's settings: uvicorn's factory.

    Each worker process calls it: `--workers` needs an import string, not an app.
    """
    from gateway.app import create_app
    from gateway.logs import configure_logging

    settings = _settings()
    # Workers are new processes: the parent's logging set-up does not reach them.
    configure_logging(json_lines=settings.env == "production", level=settings.log_level)
    return _tuned_gc(create_app(settings))


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from gateway.logs import configure_logging

    settings = _settings()
    # Before anything logs: JSON lines in production, human lines in development.
    configure_logging(json_lines=settings.env == "production", level=settings.log_level)
    if args.workers > 1 and settings.broker_url.partition("://")[0] == "memory":
        # Each worker would have its own in-process broker: a change committed in one
        # would reach the others' subscribers only at their next poll of the change log.
        sys.exit(
            f"gateway: --workers {args.workers} needs GATEWAY_BROKER_URL=redis://... "
            "(the in-process memory:// broker would not carry changes between the workers)"
        )
    _migrated(settings)
    uvicorn.run(
        "gateway.cli:serving_app",
        factory=True,
        workers=args.workers,
        host=args.host,
        port=args.port,
        log_config=None,  # uvicorn's lines go through the handler set up above
        log_level=settings.log_level.lower(),
        access_log=False,
        ws_max_size=WS_MAX_SIZE,
        # Status changes are a few hundred bytes: compression would cost each idle
        # socket a zlib compressor and decompressor (about 46 KiB) for nothing.
        ws_per_message_deflate=False,
    )


def _migrate(_: argparse.Namespace) -> None:
    _migrated(_settings())
    print("database is up to date")


async def _with_sessions(settings: Settings, work: Callable[[SessionFactory], Awaitable[_T]]) -> _T:
    from gateway.db import create_engine, create_session_factory

    engine = create_engine(settings)
    try:
        return await work(create_session_factory(engine))
    finally:
        await engine.dispose()


def _seed_demo(args: argparse.Namespace) -> None:
    from gateway.demo import DEMO_TENANTS, demo_ids, seed_demo

    settings = _migrated(_settings())

    async def work(factory: SessionFactory) -> tuple[int, dict[str, str]]:
        return await seed_demo(factory, emails=args.emails, seed=args.seed), await demo_ids(factory)

    written, ids = asyncio.run(_with_sessions(settings, work))
    if written:
        print(f"seeded {written} e-mails for tenants {', '.join(DEMO_TENANTS)}")
    else:
        print("demo data already present; nothing written")
    # Shell assignments, for scripts/demo and the README's examples: ids of the first office.
    for name, value in ids.items():
        print(f"{name}={value}")


def _parse_scopes(value: str) -> frozenset[Scope]:
    try:
        scopes = frozenset(Scope(part.strip()) for part in value.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"scopes must be read and/or write, got {value!r}") from None
    if not scopes:
        raise argparse.ArgumentTypeError("at least one scope is needed")
    return scopes


def _create_api_key(args: argparse.Namespace) -> None:
    from gateway.models import stored_id
    from gateway.repositories.api_keys import create_api_key, get_or_create_tenant

    settings = _migrated(_settings())

    async def work(factory: SessionFactory) -> tuple[models.Tenant, models.ApiKey, str]:
        async with factory() as session:
            tenant = await get_or_create_tenant(session=session, name=args.tenant)
            key, raw = await create_api_key(session=session, tenant_id=stored_id(tenant.id), scopes=args.scopes)
            await session.commit()
            return tenant, key, raw

    tenant, key, raw = asyncio.run(_with_sessions(settings, work))
    print(f"API key {key.prefix}... for tenant {tenant.name!r} (scopes: {key.scopes}); it is shown once:")
    print(raw)


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment is not None else "-"


def _list_api_keys(args: argparse.Namespace) -> None:
    from gateway.repositories.api_keys import get_tenant_by_name, list_api_keys

    settings = _migrated(_settings())

    async def work(factory: SessionFactory) -> list[tuple[models.ApiKey, str]]:
        async with factory() as session:
            tenant_id = None
            if args.tenant is not None:
                tenant = await get_tenant_by_name(session=session, name=args.tenant)
                if tenant is None:
                    raise NotFound(f"no tenant is called {args.tenant!r}")
                tenant_id = tenant.id
            return await list_api_keys(session=session, tenant_id=tenant_id)

    keys = asyncio.run(_with_sessions(settings, work))
    header = ("PREFIX", "TENANT", "SCOPES", "CREATED", "LAST USED", "EXPIRES", "REVOKED")
    rows = [header] + [
        (
            f"{key.prefix}...",
            tenant,
            key.scopes,
            _when(key.created_at),
            _when(key.last_used_at),
            _when(key.expires_at),
            _when(key.revoked_at),
        )
        for key, tenant in keys
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _revoke_api_key(args: argparse.Namespace) -> None:
    from gateway.models import utcnow
    from gateway.repositories.api_keys import get_api_key_by_prefix, revoke_api_key

    settings = _migrated(_settings())

    async def work(factory: SessionFactory) -> tuple[models.ApiKey, bool]:
        async with factory() as session:
            key = await get_api_key_by_prefix(session=session, prefix=args.prefix)
            revoked = await revoke_api_key(session=session, key=key, now=utcnow())
            await session.commit()
            return key, revoked

    key, revoked = asyncio.run(_with_sessions(settings, work))
    if revoked:
        # Running gateways cache keys: say how long one may still accept it.
        print(
            f"API key {key.prefix}... is revoked; running gateways refuse it within "
            f"GATEWAY_KEY_CACHE_SECONDS ({settings.key_cache_seconds:g} s here)"
        )
    else:
        print(f"API key {key.prefix}... was already revoked on {_when(key.revoked_at)}")


def _rotate_api_key(args: argparse.Namespace) -> None:
    from gateway.models import utcnow
    from gateway.repositories.api_keys import get_api_key_by_prefix, rotate_api_key

    settings = _migrated(_settings())

    async def work(factory: SessionFactory) -> tuple[models.ApiKey, models.ApiKey, str]:
        async with factory() as session:
            old = await get_api_key_by_prefix(session=session, prefix=args.prefix)
            new, raw = await rotate_api_key(
                session=session, key=old, grace=timedelta(hours=args.grace_hours), now=utcnow()
            )
            await session.commit()
            return old, new, raw

    old, new, raw = asyncio.run(_with_sessions(settings, work))
    print(f"API key {old.prefix}... stays valid until {_when(old.expires_at)}, then is refused")
    print(f"new API key {new.prefix}... (scopes: {new.scopes}); it is shown once:")
    print(raw)


def _prefix(value: str) -> str:
    prefix = value.strip().removesuffix("...")
    if not prefix:
        raise argparse.ArgumentTypeError("the key's prefix is needed, as printed at its creation")
    return prefix


def _grace_hours(value: str) -> float:
    try:
        hours = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of hours, got {value!r}") from None
    # Up to a year: beyond that a rotation is no rotation (and timedelta has bounds).
    if not 0 <= hours <= 24 * 366:
        raise argparse.ArgumentTypeError(f"must be between 0 and 8784 hours, got {value}")
    return hours


def _tenant_name(value: str) -> str:
    name = value.strip()
    if not name or len(name) > 200:
        raise argparse.ArgumentTypeError("the tenant name must be 1 to 200 characters, not blank")
    return name


def _at_least_one(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def _purge_history(args: argparse.Namespace) -> None:
    from gateway.models import utcnow
    from gateway.retention import purge_history

    settings = _migrated(_settings())
    days = args.days if args.days is not None else settings.history_days
    report = asyncio.run(
        _with_sessions(
            settings,
            lambda f: purge_history(session_factory=f, history_days=days, now=utcnow(), batch_size=args.batch_size),
        )
    )
    print(f"{report.summary()} (history kept {days} days)")


def _export_schema(args: argparse.Namespace) -> None:
    from gateway.schema import sdl

    text = sdl()
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}")


def _register_documents(args: argparse.Namespace) -> None:
    from gateway.documents import read_documents, register_documents

    try:
        documents = read_documents(args.files)
    except (OSError, ValueError) as error:
        sys.exit(f"gateway: {error}")
    settings = _migrated(_settings())

    async def work(factory: SessionFactory) -> int:
        async with factory() as session:
            return await register_documents(session=session, documents=documents)

    added = asyncio.run(_with_sessions(settings, work))
    print(f"registered {added} new trusted documents ({len(documents) - added} already known)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="E-mail delivery status gateway.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="apply pending migrations, then serve HTTP")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    serve.add_argument(
        "--workers",
        type=_at_least_one,
        default=1,
        help="server processes sharing the port (default 1); more than one needs GATEWAY_BROKER_URL=redis://...",
    )
    serve.set_defaults(run=_serve)

    migrate = commands.add_parser("migrate", help="apply pending database migrations")
    migrate.set_defaults(run=_migrate)

    seed = commands.add_parser("seed-demo", help="load a deterministic demo data set (once)")
    seed.add_argument("--emails", type=_at_least_one, default=300, help="how many e-mails (default 300)")
    seed.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    seed.set_defaults(run=_seed_demo)

    key = commands.add_parser("create-api-key", help="create an API key (and the tenant when new)")
    key.add_argument("--tenant", required=True, type=_tenant_name, help="tenant name")
    key.add_argument(
        "--scopes",
        type=_parse_scopes,
        default=frozenset({Scope.READ, Scope.WRITE}),
        help="comma-separated: read,write (default both)",
    )
    key.set_defaults(run=_create_api_key)

    keys = commands.add_parser("list-api-keys", help="list API keys (prefix, tenant, scopes, dates; never the key)")
    keys.add_argument("--tenant", type=_tenant_name, default=None, help="only this tenant's keys")
    keys.set_defaults(run=_list_api_keys)

    revoke = commands.add_parser("revoke-api-key", help="revoke an API key, named by its prefix")
    revoke.add_argument(
        "prefix", type=_prefix, metavar="PREFIX", help="the key's prefix, as printed at its creation (gw_...)"
    )
    revoke.set_defaults(run=_revoke_api_key)

    rotate = commands.add_parser(
        "rotate-api-key",
        help="create a new key with the same tenant and scopes; the old one expires after a grace period",
    )
    rotate.add_argument(
        "prefix", type=_prefix, metavar="PREFIX", help="the old key's prefix, as printed at its creation (gw_...)"
    )
    rotate.add_argument(
        "--grace-hours",
        type=_grace_hours,
        default=DEFAULT_GRACE_HOURS,
        help=f"hours both keys stay valid (default {DEFAULT_GRACE_HOURS:g})",
    )
    rotate.set_defaults(run=_rotate_api_key)

    purge = commands.add_parser(
        "purge-history", help="delete event histories past the retention window (statuses stay)"
    )
    purge.add_argument(
        "--days",
        type=_at_least_one,
        default=None,
        help="days of history kept after sending (default GATEWAY_HISTORY_DAYS)",
    )
    purge.add_argument("--batch-size", type=_at_least_one, default=1000, help="e-mails per transaction (default 1000)")
    purge.set_defaults(run=_purge_history)

    documents = commands.add_parser(
        "register-documents",
        help="register trusted GraphQL documents (.graphql files, or JSON manifests {hash: document})",
    )
    documents.add_argument(
        "files",
        nargs="+",
        type=Path,
        metavar="FILE",
        help="a .graphql file, or a persisted-documents JSON manifest (Apollo, GraphQL Codegen)",
    )
    documents.set_defaults(run=_register_documents)

    export = commands.add_parser("export-schema", help="write the GraphQL schema (SDL)")
    export.add_argument(
        "--output", "-o", default="schema.graphql", help="file, or - for stdout (default schema.graphql)"
    )
    export.set_defaults(run=_export_schema)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except DomainError as error:
        # An expected refusal (unknown or ambiguous key prefix...): its message says it all.
        sys.exit(f"gateway: {error}")


if __name__ == "__main__":
    main()
