"""The ASGI application: GraphQL, health, metrics; resources live in the lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, TypedDict

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from cross_web import HTTPException
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL

from gateway.config import Settings, get_settings
from gateway.context import Context
from gateway.db import SessionFactory, create_engine, create_session_factory
from gateway.metrics import Metrics, MetricsMiddleware
from gateway.pubsub import Broker
from gateway.repositories.api_keys import Principal, get_principal
from gateway.schema import build_schema
from gateway.webhooks.providers.ses import CertificateStore
from gateway.webhooks.routes import webhook_routes

__all__ = ["create_app"]

log = logging.getLogger(__name__)

_MAX_BODY = 1024 * 1024


class State(TypedDict):
    settings: Settings
    engine: AsyncEngine
    session_factory: SessionFactory
    broker: Broker
    signing_key: bytes
    metrics: Metrics
    sns_certificates: CertificateStore


def _bearer(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, key = value.partition(" ")
    return key.strip() if scheme.lower() == "bearer" and key.strip() else None


async def authenticate(session_factory: SessionFactory, authorization: object) -> Principal | None:
    """The principal behind an `Authorization: Bearer <key>` value, or None."""
    key = _bearer(authorization) if isinstance(authorization, str) else None
    if key is None:
        return None
    async with session_factory() as session:
        return await get_principal(session=session, raw_key=key)


def _unauthenticated(message: str) -> JSONResponse:
    return JSONResponse(
        {"errors": [{"message": message, "extensions": {"code": "UNAUTHENTICATED"}}]},
        status_code=401,
        headers={"WWW-Authenticate": 'Bearer realm="gateway"'},
    )


class GatewayGraphQL(GraphQL[Context, None]):
    """Strawberry's ASGI view with the gateway's context and websocket authentication."""

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        context: Context = request.state.context  # made and closed by GraphQLEndpoint
        return context

    async def on_ws_connect(self, context: Context) -> None:
        params = context.connection_params
        authorization = params.get("authorization") if isinstance(params, dict) else None
        principal = await authenticate(context.session_factory, authorization)
        if principal is None:
            raise ConnectionRejectionError({"message": "a valid API key is required"})
        context.authenticate(principal)

    def encode_json(self, data: object) -> bytes:  # type: ignore[override]
        return orjson.dumps(data)

    def parse_json(self, data: str | bytes) -> Any:
        # Strawberry takes any JSON value and then fails with a 500 on a bare
        # string or number: a request body must be an object (or a batch list).
        parsed = super().parse_json(data)
        if not isinstance(parsed, dict | list):
            raise HTTPException(400, "the request body must be a JSON object")
        return parsed


class GraphQLEndpoint:
    """Authenticates HTTP requests before strawberry sees them; answers 401 without a key."""

    def __init__(self, view: GatewayGraphQL) -> None:
        self.view = view

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal = None
        if scope["type"] == "http":
            request = Request(scope, receive)
            if int(request.headers.get("content-length") or 0) > _MAX_BODY:
                response = JSONResponse({"errors": [{"message": "request body too large"}]}, status_code=413)
                await response(scope, receive, send)
                return
            wants_ide = (
                request.method == "GET"
                and "text/html" in request.headers.get("accept", "")
                and "query" not in request.query_params
            )
            if not wants_ide:
                principal = await authenticate(
                    request.state.session_factory, request.headers.get("authorization")
                )
                if principal is None:
                    message = (
                        "missing API key: send Authorization: Bearer <key>"
                        if not request.headers.get("authorization")
                        else "invalid API key"
                    )
                    await _unauthenticated(message)(scope, receive, send)
                    return
        state = scope["state"]
        context = Context(
            settings=state["settings"],
            session_factory=state["session_factory"],
            broker=state["broker"],
            signing_key=state["signing_key"],
            principal=principal,
        )
        state["context"] = context
        try:
            await self.view(scope, receive, send)
        finally:
            await context.close()


async def healthz(_: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    state = request.state
    checks: dict[str, str] = {}
    try:
        async with state.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as error:  # any failure means not ready; the reason is logged
        log.warning("readiness: database unreachable: %s", error)
        checks["database"] = "unreachable"
    checks["broker"] = "ok" if await state.broker.ping() else "unreachable"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ready else "not ready", **checks}, status_code=200 if ready else 503)


async def metrics(request: Request) -> Response:
    return PlainTextResponse(request.state.metrics.render(), media_type="text/plain; version=0.0.4")


def create_app(settings: Settings | None = None) -> Starlette:
    """The gateway as an ASGI app; `settings` defaults to the environment's."""
    settings = settings or get_settings()
    app_metrics = Metrics()
    schema = build_schema(settings, on_error=lambda kind: app_metrics.graphql_errors.labels(kind).inc())
    protocols = [GRAPHQL_TRANSPORT_WS_PROTOCOL] + ([GRAPHQL_WS_PROTOCOL] if settings.legacy_ws else [])
    view = GatewayGraphQL(
        schema,
        graphql_ide="graphiql",
        subscription_protocols=protocols,
        connection_init_wait_timeout=timedelta(seconds=5),
        max_subscriptions_per_connection=settings.max_subscriptions_per_connection,
    )
    endpoint = GraphQLEndpoint(view)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[State]:
        engine = create_engine(settings)
        broker = Broker(settings.broker_url, queue_size=settings.subscriber_queue_size)
        await broker.connect()
        try:
            yield State(
                settings=settings,
                engine=engine,
                session_factory=create_session_factory(engine),
                broker=broker,
                signing_key=settings.signing_key(),
                metrics=app_metrics,
                sns_certificates=CertificateStore(),
            )
        finally:
            await broker.disconnect()
            await engine.dispose()

    app = Starlette(
        debug=settings.debug,
        routes=[
            Route("/graphql", endpoint, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", endpoint),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            *webhook_routes(),
        ],
        lifespan=lifespan,
    )
    app.add_middleware(MetricsMiddleware, metrics=app_metrics)
    return app
