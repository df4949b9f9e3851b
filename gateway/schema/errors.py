"""Which errors reach the client as they are, which are masked, and how each is logged."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import strawberry
from graphql import GraphQLError, GraphQLSyntaxError
from strawberry.extensions import MaskErrors

from gateway.db import database_unavailable
from gateway.errors import DomainError

__all__ = ["SERVICE_UNAVAILABLE", "ExpectedErrors", "ReportingSchema", "report"]

log = logging.getLogger("gateway.errors")

SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
_UNAVAILABLE_MESSAGE = "The database is unavailable; retry later."
_LEVELS = {"expected": logging.INFO, "unavailable": logging.WARNING, "unexpected": logging.ERROR}


def _classify(error: GraphQLError) -> tuple[str, str]:
    """(kind, code): expected (the client's mistake), unavailable (an outage), or unexpected (a bug).

    Expected: a `gateway.errors.DomainError` raised by a resolver (bad id, page size,
    not found...), and every error about the request itself (syntax, validation,
    variables, limits), which has no path.
    """
    original = error.original_error
    if isinstance(original, DomainError):
        return "expected", original.code
    if original is not None and database_unavailable(original):
        return "unavailable", SERVICE_UNAVAILABLE
    if original is None or isinstance(original, GraphQLError) or error.path is None:
        if error.extensions and isinstance(error.extensions.get("code"), str):
            return "expected", str(error.extensions["code"])
        if isinstance(error, GraphQLSyntaxError):
            return "expected", "GRAPHQL_PARSE_FAILED"
        # graphql-core gives variable-coercion errors no class of their own, only this wording.
        if error.path is not None or error.message.startswith("Variable "):
            return "expected", "BAD_USER_INPUT"
        return "expected", "GRAPHQL_VALIDATION_FAILED"
    return "unexpected", "INTERNAL_SERVER_ERROR"


def report(errors: Iterable[GraphQLError], *, context: Any = None, operation_name: str | None = None) -> None:
    """One log line per error, saying who asked what and what went wrong; a traceback only for bugs.

    Every error that is not a bug also gets its `extensions.code` here (parse and
    validation errors included, which no resolver raised), so a client can always
    branch on the code rather than on the wording.
    """
    principal = getattr(context, "principal", None)
    request_id = getattr(context, "request_id", None)
    tenant_id = getattr(principal, "tenant_id", None)
    for error in errors:
        kind, code = _classify(error)
        if kind == "expected" and not (error.extensions or {}).get("code"):
            error.extensions = {**(error.extensions or {}), "code": code}
        # A driver's message goes on with the SQL statement: its first line says enough.
        message = error.message.partition("\n")[0]
        if kind == "unavailable":
            message = f"{message} ({type(error.original_error).__name__})"
        log.log(
            _LEVELS[kind],
            "GraphQL %s error %s: %s [request_id=%s tenant_id=%s operation=%s path=%s]",
            kind,
            code,
            message,
            request_id,
            tenant_id,
            operation_name,
            error.path,
            exc_info=error.original_error if kind == "unexpected" else None,
            extra={
                "request_id": request_id,
                "tenant_id": tenant_id,
                "operation_name": operation_name,
                "error_code": code,
            },
        )


class ReportingSchema(strawberry.Schema):
    """strawberry's Schema, logging each error as `report` does.

    strawberry's own log puts every error, a client's typo included, at ERROR with
    a traceback. `process_errors` is its hook for this: it sees every error of
    every operation once (parse errors included, which skip the extensions'
    `on_operation`), before the masking.
    """

    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        report(
            errors,
            context=getattr(execution_context, "context", None),
            operation_name=execution_context.operation_name if execution_context is not None else None,
        )


class ExpectedErrors(MaskErrors):
    """Expected errors keep their message and get `extensions.code`; the rest is masked.

    A database that cannot be reached is no bug: the client reads SERVICE_UNAVAILABLE
    and a message that says to retry. Anything else raised while resolving a field
    reaches the client as "Unexpected error." unless debug is on.
    """

    def __init__(self, *, debug: bool = False, on_error: Callable[[str], None] | None = None) -> None:
        super().__init__(should_mask_error=self._should_mask)
        self.debug = debug
        self.on_error = on_error or (lambda _kind: None)

    def _should_mask(self, error: GraphQLError) -> bool:
        kind, code = _classify(error)
        self.on_error(kind)
        if isinstance(error.original_error, DomainError):
            error.extensions = {**(error.extensions or {}), "code": code}
        if kind == "unavailable":
            return True  # `anonymise_error` says what the client can do about it
        return kind == "unexpected" and not self.debug

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        if error.original_error is not None and database_unavailable(error.original_error):
            return GraphQLError(
                _UNAVAILABLE_MESSAGE,
                nodes=error.nodes,
                source=error.source,
                positions=error.positions,
                path=error.path,
                extensions={"code": SERVICE_UNAVAILABLE},
            )
        return super().anonymise_error(error)
