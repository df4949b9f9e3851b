"""Log lines: JSON in production, human lines in development, request fields on each.

Every line written while a request is served carries its request id, tenant and
operation name: they live in a context variable that the `RequestLog` middleware
sets, so a task the request starts (a DataLoader's batch) inherits them, and no
call site has to pass them along. The middleware also writes one completion line
per HTTP request (route, status, duration, outcome).

Nothing here ever logs a header or a body; as a last guard, whatever looks like
an API key or a bearer credential is blanked out of every line before it is written.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "HumanFormatter",
    "JsonFormatter",
    "RequestFields",
    "RequestInfo",
    "RequestLog",
    "configure_logging",
    "current_request",
]

log = logging.getLogger("gateway.requests")

# Fields that a call site may pass with `extra=` and that belong in a JSON line.
_EXTRA_FIELDS = ("method", "route", "status", "duration_ms", "outcome", "error_code", "path")
# API keys (gw_ + 43 url-safe characters), bearer and basic credentials, whsec_ secrets.
_SECRETS = re.compile(r"\bgw_[A-Za-z0-9_-]{8,}|\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+|\bwhsec_[A-Za-z0-9+/=_-]+", re.I)


@dataclass(slots=True)
class RequestInfo:
    """What every log line of one request says about it; filled in as it becomes known."""

    request_id: str | None = None
    tenant_id: int | None = None
    operation_name: str | None = None


_current: ContextVar[RequestInfo | None] = ContextVar("gateway_request", default=None)


def current_request() -> RequestInfo | None:
    """The request being served in this task (None outside requests)."""
    return _current.get()


def _redact(text: str) -> str:
    return _SECRETS.sub("[redacted]", text)


class RequestFields(logging.Filter):
    """Puts the current request's id, tenant and operation on each record (a handler filter)."""

    def filter(self, record: logging.LogRecord) -> bool:
        info = _current.get()
        for name in ("request_id", "tenant_id", "operation_name"):
            if getattr(record, name, None) is None:
                setattr(record, name, getattr(info, name, None))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request fields, extras."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": _redact(record.getMessage()),
            "request_id": getattr(record, "request_id", None),
            "tenant": getattr(record, "tenant_id", None),
            "operation": getattr(record, "operation_name", None),
        }
        for name in _EXTRA_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = _redact(self.formatException(record.exc_info))
        return orjson.dumps(line, default=str).decode()


class HumanFormatter(logging.Formatter):
    """`time level logger: message [request_id=… tenant=… operation=…]` for a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = [
            f"{label}={value}"
            for label, value in (
                ("request_id", getattr(record, "request_id", None)),
                ("tenant", getattr(record, "tenant_id", None)),
                ("operation", getattr(record, "operation_name", None)),
                *((name, getattr(record, name, None)) for name in _EXTRA_FIELDS),
            )
            if value is not None
        ]
        first, newline, rest = text.partition("\n")  # the traceback stays below the line
        if fields:
            first = f"{first} [{' '.join(fields)}]"
        return _redact(first + newline + rest)


def configure_logging(*, json_lines: bool, level: str = "INFO", stream: Any = None) -> logging.Handler:
    """One handler on the root logger (replacing any other): JSON or human lines.

    uvicorn's own loggers propagate to it, so its lines share the format.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else HumanFormatter())
    handler.addFilter(RequestFields())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    return handler


def _outcome(status: int) -> str:
    if status >= 500:
        return "server_error"
    return "client_error" if status >= 400 else "ok"


class RequestLog:
    """Sets the request's log fields for everything below it; one completion line per HTTP request.

    `route` turns a path into a label without its variable part (a tracking token is
    no secret, but a log full of them says nothing more than `/t`).
    """

    def __init__(self, app: ASGIApp, route: Any) -> None:
        self.app = app
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        info = RequestInfo(request_id=scope.get("state", {}).get("request_id"))
        token = _current.set(info)
        if scope["type"] == "websocket":
            try:
                await self.app(scope, receive, send)
            finally:
                _current.reset(token)
            return
        started = time.perf_counter()
        status = 0

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        outcome = None
        try:
            await self.app(scope, receive, send_status)
        except asyncio.CancelledError:  # the client went away (or the server is stopping)
            outcome = "disconnected"
            raise
        except BaseException:
            outcome = "server_error"
            raise
        finally:
            log.info(
                "%s %s %s",
                scope["method"],
                self.route(scope["path"]),
                status or "-",
                extra={
                    "method": scope["method"],
                    "route": self.route(scope["path"]),
                    "status": status or None,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                    "outcome": outcome or (_outcome(status) if status else "disconnected"),
                },
            )
            _current.reset(token)
