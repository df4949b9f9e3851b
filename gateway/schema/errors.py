"""Which errors reach the client as they are, and which are masked."""

from __future__ import annotations

import logging
from collections.abc import Callable

from graphql import GraphQLError
from strawberry.extensions import MaskErrors

from gateway.errors import DomainError

__all__ = ["ExpectedErrors"]

log = logging.getLogger("gateway.errors")


class ExpectedErrors(MaskErrors):
    """Expected errors keep their message and get `extensions.code`; the rest is masked.

    Expected: a `gateway.errors.DomainError` raised by a resolver (bad id, page size,
    not found...), and every error about the request itself (syntax, validation,
    variables, limits), which has no path. Anything else raised while resolving a
    field is a bug or an outage: it is logged with its traceback and reaches the
    client as "Unexpected error." unless debug is on.
    """

    def __init__(self, *, debug: bool = False, on_error: Callable[[str], None] | None = None) -> None:
        super().__init__(should_mask_error=self._should_mask)
        self.debug = debug
        self.on_error = on_error or (lambda _kind: None)

    def _should_mask(self, error: GraphQLError) -> bool:
        original = error.original_error
        if isinstance(original, DomainError):
            error.extensions = {**(error.extensions or {}), "code": original.code}
            self.on_error("expected")
            return False
        if original is None or isinstance(original, GraphQLError) or error.path is None:
            self.on_error("expected")
            return False
        log.error("unexpected error in %s", error.path, exc_info=original)
        self.on_error("unexpected")
        return not self.debug
