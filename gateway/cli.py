"""The `gateway` command: serve, migrate, seed-demo, create-api-key, purge-history,
export-schema."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gateway.config import Settings
from gateway.enums import Scope

__all__ = ["main"]


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        lines = [f"  GATEWAY_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in error.errors()]
        sys.exit("invalid settings:\n" + "\n".join(lines))


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


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from gateway.app import create_app
    from gateway.migrations import upgrade

    settings = _settings()
    upgrade(settings)
    uvicorn.run(
        _tuned_gc(create_app(settings)),
        host=args.host,
        port=args.port,
        log_level="info",
        access_log=False,
        ws_max_size=WS_MAX_SIZE,
        # Status changes are a few hundred bytes: compression would cost each idle
        # socket a zlib compressor and decompressor (about 46 KiB) for nothing.
        ws_per_message_deflate=False,
    )


def _migrate(_: argparse.Namespace) -> None:
    from gateway.migrations import upgrade

    upgrade(_settings())
    print("database is up to date")


async def _with_sessions(settings: Settings, work):  # type: ignore[no-untyped-def]
    from gateway.db import create_engine, create_session_factory

    engine = create_engine(settings)
    try:
        return await work(create_session_factory(engine))
    finally:
        await engine.dispose()


def _seed_demo(args: argparse.Namespace) -> None:
    from gateway.demo import DEMO_TENANTS, seed_demo
    from gateway.migrations import upgrade

    settings = _settings()
    upgrade(settings)
    written = asyncio.run(
        _with_sessions(settings, lambda f: seed_demo(f, emails=args.emails, seed=args.seed))
    )
    if written:
        print(f"seeded {written} e-mails for tenants {', '.join(DEMO_TENANTS)}")
    else:
        print("demo data already present; nothing written")


def _parse_scopes(value: str) -> frozenset[Scope]:
    try:
        scopes = frozenset(Scope(part.strip()) for part in value.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"scopes must be read and/or write, got {value!r}") from None
    if not scopes:
        raise argparse.ArgumentTypeError("at least one scope is needed")
    return scopes


def _create_api_key(args: argparse.Namespace) -> None:
    from gateway.migrations import upgrade
    from gateway.repositories.api_keys import create_api_key, get_or_create_tenant

    settings = _settings()
    upgrade(settings)

    async def work(factory):  # type: ignore[no-untyped-def]
        async with factory() as session:
            tenant = await get_or_create_tenant(session=session, name=args.tenant)
            key, raw = await create_api_key(session=session, tenant_id=tenant.id, scopes=args.scopes)
            await session.commit()
            return tenant, key, raw

    tenant, key, raw = asyncio.run(_with_sessions(settings, work))
    print(f"API key {key.prefix}... for tenant {tenant.name!r} (scopes: {key.scopes}); it is shown once:")
    print(raw)


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
    from gateway.migrations import upgrade
    from gateway.models import utcnow
    from gateway.retention import purge_history

    settings = _settings()
    upgrade(settings)
    days = args.days if args.days is not None else settings.history_days
    report = asyncio.run(
        _with_sessions(
            settings,
            lambda f: purge_history(
                session_factory=f, history_days=days, now=utcnow(), batch_size=args.batch_size
            ),
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="E-mail delivery status gateway.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="apply pending migrations, then serve HTTP")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    serve.set_defaults(run=_serve)

    migrate = commands.add_parser("migrate", help="apply pending database migrations")
    migrate.set_defaults(run=_migrate)

    seed = commands.add_parser("seed-demo", help="load a deterministic demo data set (once)")
    seed.add_argument("--emails", type=_at_least_one, default=300, help="how many e-mails (default 300)")
    seed.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    seed.set_defaults(run=_seed_demo)

    key = commands.add_parser("create-api-key", help="create an API key (and the tenant when new)")
    key.add_argument("--tenant", required=True, type=_tenant_name, help="tenant name")
    key.add_argument("--scopes", type=_parse_scopes, default=frozenset({Scope.READ, Scope.WRITE}),
                     help="comma-separated: read,write (default both)")
    key.set_defaults(run=_create_api_key)

    purge = commands.add_parser(
        "purge-history", help="delete event histories past the retention window (statuses stay)"
    )
    purge.add_argument("--days", type=_at_least_one, default=None,
                       help="days of history kept after sending (default GATEWAY_HISTORY_DAYS)")
    purge.add_argument("--batch-size", type=_at_least_one, default=1000,
                       help="e-mails per transaction (default 1000)")
    purge.set_defaults(run=_purge_history)

    export = commands.add_parser("export-schema", help="write the GraphQL schema (SDL)")
    export.add_argument("--output", "-o", default="schema.graphql", help="file, or - for stdout (default schema.graphql)")
    export.set_defaults(run=_export_schema)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
