"""The ASGI application: GraphQL, health, metrics; resources live in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hmac
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypedDict

import asyncpg
import orjson
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from graphql import GraphQLError, OperationDefinitionNode, get_operation_ast, parse
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from strawberry.asgi import ASGIWebSocketAdapter, GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.extensions import MaskErrors
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.http.base import BaseRequestProtocol
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions import (
    GRAPHQL_TRANSPORT_WS_PROTOCOL,
    GRAPHQL_WS_PROTOCOL,
    MULTIPART_SUBSCRIPTION_PROTOCOL,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import SubscribeMessage
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from gateway import graphiql, pixel
from gateway.auth import Authenticator
from gateway.browsers import BrowserCORS, Compression
from gateway.config import Settings, get_settings
from gateway.context import Context
from gateway.db import SessionFactory, create_engine, create_session_factory, database_unavailable
from gateway.documents import DocumentRefused, PersistedDocuments
from gateway.enums import Scope as KeyScope
from gateway.errors import BadInput
from gateway.fastpath import FastPath
from gateway.fastpath.live import LiveFastPath, Outcome
from gateway.fastpath.rows import PgRows, RepositoryRows, RowSource
from gateway.live import ChangeFeed
from gateway.logs import RequestLog, current_request
from gateway.metrics import Metrics, MetricsMiddleware, route_of
from gateway.pubsub import Broker, BrokerUnavailable
from gateway.repositories.api_keys import Principal
from gateway.retention import purge_periodically
from gateway.schema import build_schema, graphql_schema_of, limits_of, validation_rules
from gateway.schema.errors import SERVICE_UNAVAILABLE, ExpectedErrors, report
from gateway.schema.resolvers.live import connection_resume, resume_point, resuming
from gateway.tracing import tracing_for
from gateway.webhooks.providers.ses import CertificateStore
from gateway.webhooks.routes import webhook_routes

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

__all__ = ["create_app"]

log = logging.getLogger(__name__)

_MAX_BODY = 1024 * 1024
_GRAPHQL_RESPONSE = "application/graphql-response+json"
_JSON = "application/json"
# The GraphQL specification's words, as graphql-core says them.
_AMBIGUOUS = "Must provide operation name if query contains multiple operations."
_NOT_OVER_HTTP = (
    "subscriptions are served over websockets (the graphql-transport-ws protocol on /graphql), "
    'or over HTTP to clients that accept multipart/mixed;subscriptionSpec="1.0"'
)
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


class State(TypedDict):
    settings: Settings
    engine: AsyncEngine
    session_factory: SessionFactory
    broker: Broker
    feed: ChangeFeed
    rows: RowSource
    signing_key: bytes
    authenticator: Authenticator
    metrics: Metrics
    sns_certificates: CertificateStore
    documents: PersistedDocuments


def _too_large() -> JSONResponse:
    message = f"request body too large: at most {_MAX_BODY} bytes"
    return JSONResponse(
        {"errors": [{"message": message, "extensions": {"code": "REQUEST_TOO_LARGE"}}]}, status_code=413
    )


def _unauthenticated(message: str) -> JSONResponse:
    return JSONResponse(
        {"errors": [{"message": message, "extensions": {"code": "UNAUTHENTICATED"}}]},
        status_code=401,
        headers={"WWW-Authenticate": 'Bearer realm="gateway"'},
    )


def _unavailable() -> JSONResponse:
    return JSONResponse(
        {
            "errors": [
                {"message": "The database is unavailable; retry later.", "extensions": {"code": SERVICE_UNAVAILABLE}}
            ]
        },
        status_code=503,
        headers={"Retry-After": "30"},
    )


def _media_type(accept: str | None) -> str:
    """The answer's media type: the first Accept entry the gateway can give, as graphql-http
    chooses; application/json when there is none (or no Accept header), as the spec says."""
    for entry in (accept or "").split(","):
        media = entry.partition(";")[0].strip().lower()
        if media == _GRAPHQL_RESPONSE:
            return _GRAPHQL_RESPONSE
        if media in (_JSON, "application/*", "*/*"):
            return _JSON
    return _JSON


@functools.lru_cache(maxsize=512)
def _chosen_operation(query: str, operation_name: str | None, max_tokens: int) -> OperationType | str | None:
    """The type of the operation a request runs; `_AMBIGUOUS` when it names none of several.

    None when the executor is the one to say what is wrong (syntax, an unknown name).
    strawberry runs the first operation of a document when no name is given, so the
    specification's "must provide operation name" is decided here, by graphql-core.
    """
    try:
        document = parse(query, max_tokens=max_tokens)
    except GraphQLError:
        return None
    operation = get_operation_ast(document, operation_name)
    if operation is not None:
        return OperationType(operation.operation.value)
    operations = sum(isinstance(d, OperationDefinitionNode) for d in document.definitions)
    return _AMBIGUOUS if operation_name is None and operations > 1 else None


@functools.lru_cache(maxsize=512)
def _operation_name(query: str, operation_name: str | None, max_tokens: int) -> str | None:
    """The name of the operation a request runs, for its log lines (None: anonymous or unknown)."""
    if operation_name is not None:
        return operation_name
    try:
        operation = get_operation_ast(parse(query, max_tokens=max_tokens), None)
    except GraphQLError:
        return None
    return operation.name.value if operation is not None and operation.name is not None else None


def _log_operation(query: object, operation_name: object, max_tokens: int) -> None:
    info = current_request()
    if info is not None and isinstance(query, str) and isinstance(operation_name, str | None):
        info.operation_name = _operation_name(query, operation_name, max_tokens)


class LiveTransportWS(BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws with the live fast path for subscriptions."""

    view: GatewayGraphQL
    websocket: TextFrames  # the view's websocket_adapter_class

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        # The protocol's shape of `subscribe`; strawberry would drop anything else
        # without a word, and the client would wait forever.
        # What the client sent, whatever SubscribeMessage says it should be.
        operation_id: object = message.get("id")
        payload: object = message.get("payload")
        if not isinstance(operation_id, str) or not operation_id:
            await self.handle_invalid_message("subscribe: `id` must be a non-empty string")
        elif not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
            await self.handle_invalid_message("subscribe: `payload` must be an object with a string `query`")
        elif not isinstance(payload.get("variables"), dict | None):
            await self.handle_invalid_message("subscribe: `payload.variables` must be an object or null")
        elif not isinstance(payload.get("operationName"), str | None):
            await self.handle_invalid_message("subscribe: `payload.operationName` must be a string or null")
        elif not isinstance(payload.get("extensions"), dict | None):
            await self.handle_invalid_message("subscribe: `payload.extensions` must be an object or null")
        else:
            await super().handle_subscribe(message)

    async def run_operation(self, operation: Operation[Context, None]) -> None:
        documents: PersistedDocuments = self.websocket.ws.state.documents
        try:
            # With trusted documents only, a subscription must be registered too.
            await documents.resolve(operation.query, None)
        except DocumentRefused as refused:
            with contextlib.suppress(WebSocketDisconnected):  # the error frame also forgets the id
                await operation.send_operation_message(
                    {
                        "id": operation.id,
                        "type": "error",
                        "payload": [{"message": refused.message, "extensions": {"code": refused.code}}],
                    }
                )
            return
        chosen = _chosen_operation(operation.query, operation.operation_name, self.view.max_tokens)
        if chosen == _AMBIGUOUS:
            # As strawberry answers an unknown operation name: the request is malformed.
            self.operations.pop(operation.id, None)
            await self.websocket.close(4400, _AMBIGUOUS)
            return
        # The cursor a stock client's reconnect resumes this operation from (checked at connect).
        with resuming(connection_resume(self.context.connection_params).get(operation.id)):
            await self._run_operation(operation)

    async def _run_operation(self, operation: Operation[Context, None]) -> None:
        live = self.view.live
        plan = live.plan(operation.query, operation.operation_name) if live is not None else None
        if live is None or plan is None:
            await super().run_operation(operation)
            return
        try:
            outcome = await live.run(
                plan,
                operation_id=operation.id,
                variables=operation.variables,
                context=self.context,
                send_text=self._send_text,
            )
        except WebSocketDisconnected:
            return
        except Exception as error:  # as the reference does: log, then complete
            await self.handle_task_exception(error)
            outcome = Outcome.ENDED
        if outcome is Outcome.REFERENCE:
            await super().run_operation(operation)
        elif outcome is Outcome.ENDED:
            with contextlib.suppress(WebSocketDisconnected):
                await operation.send_operation_message({"id": operation.id, "type": "complete"})

    async def _send_text(self, text: str) -> None:
        # Text frames, as graphql-transport-ws clients (browsers' graphql-ws) expect,
        # straight to the ASGI server: this runs once per subscriber and change.
        send = self.context.send
        if send is None or self.websocket.ws.application_state is not WebSocketState.CONNECTED:
            raise WebSocketDisconnected
        try:
            await send({"type": "websocket.send", "text": text})
        except OSError as error:  # the ASGI server's word for a closed socket
            raise WebSocketDisconnected from error


class TextFrames(ASGIWebSocketAdapter):
    """Protocol messages as text frames, as browsers' graphql-ws clients expect.

    (Strawberry sends what `encode_json` returns; orjson's bytes would go out as
    binary frames.)
    """

    async def send_json(self, message: Mapping[str, object]) -> None:
        try:
            await self.ws.send_text(orjson.dumps(message).decode())
        except WebSocketDisconnect as error:
            raise WebSocketDisconnected from error


class _NotRun(ExecutionResult):
    """A request refused before its document was known (persisted documents): no `data` at all."""


class GatewayGraphQL(GraphQL[Context, None]):
    """Strawberry's ASGI view with the gateway's context and websocket authentication."""

    websocket_adapter_class = TextFrames
    graphql_transport_ws_handler_class = LiveTransportWS
    live: LiveFastPath | None = None

    def __init__(self, schema: Any, *, max_tokens: int, **options: Any) -> None:
        super().__init__(schema, **options)
        self.max_tokens = max_tokens

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        context: Context = request.state.context  # made and closed by GraphQLEndpoint
        if isinstance(request, WebSocket):
            context.connection = request
        else:
            context.response = response
        return context

    def should_render_graphql_ide(self, request: BaseRequestProtocol) -> bool:
        # A GET naming a persisted query's hash has no `query` either: it is a request, not a browser.
        return super().should_render_graphql_ide(request) and "extensions" not in request.query_params

    async def get_sub_response(self, request: Request | WebSocket) -> Response:
        response = await super().get_sub_response(request)
        response.media_type = _media_type(request.headers.get("accept"))
        return response

    async def execute_single(  # noqa: PLR0917  (strawberry's signature)
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response,
        context: Context,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        try:
            resolved = await request.state.documents.resolve(request_data.query, request_data.extensions)
        except DocumentRefused as refused:
            return _NotRun(data=None, errors=[GraphQLError(refused.message, extensions={"code": refused.code})])
        except Exception as error:
            if not database_unavailable(error):
                raise
            message = "The database is unavailable; retry later."
            return _NotRun(data=None, errors=[GraphQLError(message, extensions={"code": SERVICE_UNAVAILABLE})])
        if resolved is not None:
            request_data = dataclasses.replace(request_data, query=resolved.query)
        query, name = request_data.query, request_data.operation_name
        _log_operation(query, name, self.max_tokens)
        if isinstance(query, str) and isinstance(name, str | None):
            chosen = _chosen_operation(query, name, self.max_tokens)
            if chosen == _AMBIGUOUS:
                # As strawberry answers an unknown operation name.
                raise HTTPException(400, _AMBIGUOUS)
            if chosen is OperationType.SUBSCRIPTION:
                # strawberry would run it as a query, and fail on the stream it gets.
                raise HTTPException(400, _NOT_OVER_HTTP)
        return await super().execute_single(
            request=request,
            request_adapter=request_adapter,
            sub_response=sub_response,
            context=context,
            root_value=root_value,
            request_data=request_data,
        )

    async def process_result(self, request: Request, result: ExecutionResult) -> GraphQLHTTPResponse:
        """The GraphQL-over-HTTP status codes, for clients that accept application/graphql-response+json.

        A request that never ran (it did not parse or validate, or its variables did
        not coerce: errors without a path) is a 400 with no `data`, and one the
        database could not serve is a 503. application/json keeps 200 for both.
        """
        answer = await super().process_result(request, result)
        if isinstance(result, _NotRun):
            answer.pop("data", None)  # as APQ clients expect: the document was never found
        response = request.state.context.response
        if response is None or response.media_type != _GRAPHQL_RESPONSE or result.data is not None or not result.errors:
            return answer
        if any((e.extensions or {}).get("code") == SERVICE_UNAVAILABLE for e in result.errors):
            response.status_code = 503
            response.headers["Retry-After"] = "30"
        elif all(e.path is None for e in result.errors):
            response.status_code = 400
            answer.pop("data", None)
        return answer

    async def render_graphql_ide(self, request: Request) -> Response:
        return graphiql.page()  # same-origin assets only: strawberry's page needs a CDN

    def create_response(
        self, response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse], sub_response: Response
    ) -> Response:
        response = super().create_response(response_data, sub_response)
        response.headers["content-type"] = sub_response.media_type or _JSON
        return response

    async def on_ws_connect(self, context: Context) -> dict[str, object]:
        params = context.connection_params
        authorization = params.get("authorization") if isinstance(params, dict) else None
        principal = await context.authenticator(authorization) if context.authenticator else None
        if principal is None:
            raise ConnectionRejectionError({"message": "a valid API key is required"})
        try:
            connection_resume(params)
        except BadInput as error:
            raise ConnectionRejectionError({"message": str(error)}) from None
        context.authenticate(principal)
        if (info := current_request()) is not None:
            info.tenant_id = principal.tenant_id
        # Where a client's new operations resume from, should it reconnect before their first change.
        return {"cursor": await resume_point(context)}

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)

    def parse_json(self, data: str | bytes) -> Any:
        # Strawberry takes any JSON value and then fails with a 500 on a bare
        # string or number: a request body must be an object (or a batch list).
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise HTTPException(400, "Unable to parse request body as JSON") from None
        if not isinstance(parsed, dict | list):
            raise HTTPException(400, "the request body must be a JSON object")
        return parsed

    def decode_json(self, data: str | bytes) -> object:
        # Websocket frames: anything but a JSON object closes the socket with 4400
        # (strawberry would crash on a list and drop the connection with 1006).
        parsed = orjson.loads(data)
        if not isinstance(parsed, dict):
            raise json.JSONDecodeError("a message must be a JSON object", str(data)[:50], 0)
        return parsed


class GraphQLEndpoint:
    """Authenticates HTTP requests before strawberry sees them; answers 401 without a key.

    A POSTed query document is compiled by the fast path the first time it is
    seen; requests with it run the plan, and fall back to strawberry (the
    reference) whenever the plan cannot answer exactly.
    """

    def __init__(self, view: GatewayGraphQL, fastpath: FastPath | None) -> None:
        self.view = view
        self.fastpath = fastpath

    async def _fast(self, scope: Scope, send: Send, body: bytes, principal: Principal, state: dict[str, Any]) -> bool:
        """Answer from a plan; False when the reference must answer."""
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return False
        if not isinstance(payload, dict):
            return False
        name, variables = payload.get("operationName"), payload.get("variables")
        if not (name is None or isinstance(name, str)) or not (variables is None or isinstance(variables, dict)):
            return False
        try:
            # A persisted document's text comes from memory (or once from the database).
            resolved = await state["documents"].resolve(payload.get("query"), payload.get("extensions"))
        except Exception:  # a refusal, or the database: the reference answers either its own way
            return False
        if resolved is None:
            return False
        _log_operation(resolved.query, name, self.view.max_tokens)
        assert self.fastpath is not None  # noqa: S101  (checked by the caller)
        plan = self.fastpath.plan(resolved.query, name, digest=resolved.sha256)
        if plan is None or not principal.can(KeyScope.READ):
            return False
        try:
            answer = await self.fastpath.run(plan, variables, principal.tenant_id, state["rows"])
        except Exception as error:  # the reference answers, and reports what went wrong its own way
            if not database_unavailable(error):
                log.warning("fast path failed; falling back", exc_info=True)
            return False
        if answer is None:
            return False
        media_type = _media_type(Headers(scope=scope).get("accept"))
        await Response(answer, media_type=media_type)(scope, _no_receive, send)
        return True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal = None
        if scope["type"] == "http":
            request = Request(scope, receive)
            if int(request.headers.get("content-length") or 0) > _MAX_BODY:
                response = _too_large()
                await response(scope, receive, send)
                return
            wants_ide = (
                request.method == "GET"
                and "text/html" in request.headers.get("accept", "")
                and "query" not in request.query_params
                and "extensions" not in request.query_params
            )
            if not wants_ide:
                try:
                    principal = await request.state.authenticator(request.headers.get("authorization"))
                except Exception as error:
                    if not database_unavailable(error):
                        raise
                    log.warning("API key not checked: database unavailable (%s)", type(error).__name__)
                    await _unavailable()(scope, receive, send)
                    return
                if principal is None:
                    message = (
                        "missing API key: send Authorization: Bearer <key>"
                        if not request.headers.get("authorization")
                        else "invalid API key"
                    )
                    await _unauthenticated(message)(scope, receive, send)
                    return
                if (info := current_request()) is not None:
                    info.tenant_id = principal.tenant_id
        state = scope["state"]
        if (
            principal is not None
            and scope["method"] == "POST"
            and self.fastpath is not None
            and "application/json" in Headers(scope=scope).get("content-type", "")
        ):
            body = await _read_body(receive)
            if body is None:
                response = _too_large()
                await response(scope, receive, send)
                return
            served = await self._fast(scope, send, body, principal, state)
            state["metrics"].fast_path.labels("plan" if served else "reference").inc()
            if served:
                return
            receive = _replay(body, receive)
        context = Context(
            settings=state["settings"],
            session_factory=state["session_factory"],
            broker=state["broker"],
            signing_key=state["signing_key"],
            feed=state["feed"],
            authenticator=state["authenticator"],
            principal=principal,
            send=send if scope["type"] == "websocket" else None,
            request_id=state.get("request_id"),
            change_counter=state["metrics"],
        )
        state["context"] = context
        try:
            await self.view(scope, receive, send)
        finally:
            await context.close()


class RequestIds:
    """Gives each request an id: the client's `X-Request-Id` when it is a sane token, else a new one.

    The id goes into every log line about the request and back in the answer's
    `X-Request-Id` header, so a client's report finds the server's lines.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get("x-request-id", "")
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.accept"):
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        await self.app(scope, receive, send_with_id)


def _masked(masking: MaskErrors, errors: list[GraphQLError]) -> list[GraphQLError]:
    """The live fast path's errors, logged and masked as strawberry's are (it runs no schema
    of its own), through MaskErrors' public `should_mask_error` and `anonymise_error`."""
    report(errors)
    return [masking.anonymise_error(e) if masking.should_mask_error(e) else e for e in errors]


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None past the size limit."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > _MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the already-read body once, then the client's messages."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


async def _nothing_to_reset(_connection: asyncpg.Connection) -> None:
    """The fast path reads in autocommit and changes no session state (no SET, LISTEN or
    advisory lock), so a connection goes back to the pool without asyncpg's reset
    statement: one round trip less per request. asyncpg still rolls back an open
    transaction first, and closes a connection whose query was cancelled."""


async def _fast_pool(settings: Settings) -> asyncpg.Pool | None:
    """Plain asyncpg connections for the fast path, on PostgreSQL only."""
    url = make_url(settings.database_url)
    if url.get_backend_name() != "postgresql":
        return None
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        return await asyncpg.create_pool(dsn, min_size=1, max_size=10, reset=_nothing_to_reset)
    except (OSError, asyncpg.PostgresError):
        log.warning("fast path off: PostgreSQL unreachable at start", exc_info=True)
        return None


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
    token = request.state.settings.metrics_token
    if token is not None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        expected = token.get_secret_value().encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            return PlainTextResponse(
                "metrics require Authorization: Bearer <token>\n",
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
    return PlainTextResponse(request.state.metrics.render(), media_type="text/plain; version=0.0.4")


def create_app(settings: Settings | None = None, *, tracer_provider: TracerProvider | None = None) -> Starlette:
    """The gateway as an ASGI app; `settings` defaults to the environment's.

    Traces go to `tracer_provider` when given, else over OTLP when
    `OTEL_EXPORTER_OTLP_ENDPOINT` is set; with neither nothing is instrumented.
    """
    settings = settings or get_settings()
    app_metrics = Metrics()
    tracing = tracing_for(settings, tracer_provider)

    def count_error(kind: str) -> None:
        app_metrics.graphql_errors.labels(kind).inc()

    schema = build_schema(
        settings, on_error=count_error, extra_extensions=[tracing.schema_extension()] if tracing else ()
    )
    # Multipart subscriptions: over HTTP, for networks that block websockets (Apollo Client's HttpLink).
    protocols = [GRAPHQL_TRANSPORT_WS_PROTOCOL, MULTIPART_SUBSCRIPTION_PROTOCOL] + (
        [GRAPHQL_WS_PROTOCOL] if settings.legacy_ws else []
    )
    view = GatewayGraphQL(
        schema,
        max_tokens=settings.max_tokens,
        graphql_ide="graphiql" if settings.graphiql else None,
        subscription_protocols=protocols,
        connection_init_wait_timeout=timedelta(seconds=settings.ws_init_timeout_seconds),
        max_subscriptions_per_connection=settings.max_subscriptions_per_connection,
    )
    fastpath = None
    if settings.fast_path:
        # The compiled paths refuse what the reference refuses, by the same rules and limits.
        validator, limits = validation_rules(settings), limits_of(settings)
        fastpath = FastPath(
            graphql_schema_of(schema),
            limits=limits,
            history_days=settings.history_days,
            validator=validator,
            max_tokens=settings.max_tokens,
            on_unsupported=lambda reason: app_metrics.fast_path_unsupported.labels(reason).inc(),
        )
        masking = ExpectedErrors(debug=settings.debug, on_error=count_error)
        view.live = LiveFastPath(
            graphql_schema_of(schema),
            validator=validator,
            limits=limits,
            max_tokens=settings.max_tokens,
            mask=functools.partial(_masked, masking),
        )
    endpoint = GraphQLEndpoint(view, fastpath)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        engine = create_engine(settings)
        if tracing is not None:
            tracing.start(engine)
        broker = Broker(
            settings.broker_url,
            queue_size=settings.subscriber_queue_size,
            prefix=settings.broker_channel_prefix,
        )
        try:
            await broker.connect()
        except BrokerUnavailable:
            # Start degraded: queries and webhooks work without the broker, live
            # clients are served by the feed's polling, and the feed reconnects.
            log.warning(
                "broker %s unreachable at start; live changes will be polled", settings.broker_url.split("@")[-1]
            )
        session_factory = create_session_factory(engine)
        pool = await _fast_pool(settings) if settings.fast_path else None
        rows: RowSource = PgRows(pool) if pool is not None else RepositoryRows(engine)
        feed = ChangeFeed(
            session_factory=session_factory,
            broker=broker,
            queue_size=settings.subscriber_queue_size,
            poll_interval=settings.feed_poll_seconds,
            observer=app_metrics,
            # Each change rendered once per shared selection, before it goes out.
            prepare=view.live.prepare if view.live is not None else None,
        )
        await feed.start()
        # Also on app.state, for operators' introspection and the tests' clean-up checks.
        app.state.feed, app.state.broker, app.state.engine = feed, broker, engine
        # The history purge, started right before `try` so `finally` always cancels it.
        # Every replica runs one: SKIP LOCKED shares the work, none waits for another.
        purge = (
            asyncio.create_task(
                purge_periodically(
                    session_factory=session_factory,
                    settings=settings,
                    interval=settings.purge_interval_seconds,
                )
            )
            if settings.purge_interval_seconds > 0
            else None
        )
        authenticator = Authenticator(session_factory, ttl=settings.key_cache_seconds)
        try:
            yield State(
                settings=settings,
                engine=engine,
                session_factory=session_factory,
                broker=broker,
                feed=feed,
                rows=rows,
                signing_key=settings.signing_key(),
                authenticator=authenticator,
                metrics=app_metrics,
                sns_certificates=CertificateStore(),
                documents=PersistedDocuments(
                    session_factory=session_factory,
                    trusted_only=settings.trusted_documents_only,
                    cache_size=settings.persisted_queries_cache_size,
                ),
            )
        finally:
            await feed.stop()
            if pool is not None:
                await pool.close()
            if purge is not None:
                purge.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await purge
            await broker.disconnect()
            await authenticator.aclose()  # the last-use write in flight, before the engine goes
            await engine.dispose()
            if tracing is not None:
                tracing.stop()

    app = Starlette(
        debug=settings.debug,
        routes=[
            Route("/graphql", endpoint, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", endpoint),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            Route("/t/{token}", pixel.tracking_image, methods=["GET", "HEAD"]),
            *webhook_routes(),
            *(graphiql.routes() if settings.graphiql else []),
        ],
        lifespan=lifespan,
    )
    # The last added runs first: the request id, then the log fields and completion
    # line, then the request's span (so the rest is traced under it), then CORS,
    # compression and the metrics.
    app.add_middleware(MetricsMiddleware, metrics=app_metrics)
    app.add_middleware(Compression, min_bytes=settings.compression_min_bytes)
    # Outside compression so a preflight is answered first.
    app.add_middleware(BrowserCORS, origins=settings.cors_origins, max_age=settings.cors_max_age_seconds)
    if tracing is not None:
        middleware, provider = tracing.asgi_middleware, tracing.provider

        def traced(inner: ASGIApp) -> ASGIApp:
            # The instrumentation ships no types: its instance is the ASGI app it wraps.
            # One span per request or websocket, not one per ASGI message (a websocket's frames).
            instrumented: ASGIApp = middleware(inner, tracer_provider=provider, exclude_spans=["receive", "send"])
            return instrumented

        app.add_middleware(traced)
    app.add_middleware(RequestLog, route=route_of)
    app.add_middleware(RequestIds)
    app.state.live = view.live  # for operators' introspection and the tests
    app.state.metrics = app_metrics
    return app
