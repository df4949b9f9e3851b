"""Scope checks on root fields: every key reads its own tenant; writing needs `write`."""

from __future__ import annotations

from typing import Any

from strawberry.permission import BasePermission
from strawberry.types import Info

from gateway.context import Context
from gateway.enums import Scope

__all__ = ["CanRead", "CanWrite"]


class CanRead(BasePermission):
    message = "this API key lacks the 'read' scope"
    error_extensions = {"code": "FORBIDDEN"}

    def has_permission(self, source: Any, info: Info[Context, None], **kwargs: Any) -> bool:
        principal = info.context.principal
        return principal is not None and principal.can(Scope.READ)


class CanWrite(BasePermission):
    message = "this API key lacks the 'write' scope"
    error_extensions = {"code": "FORBIDDEN"}

    def has_permission(self, source: Any, info: Info[Context, None], **kwargs: Any) -> bool:
        principal = info.context.principal
        return principal is not None and principal.can(Scope.WRITE)
