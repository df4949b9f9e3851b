"""The status gateway: a GraphQL API for e-mail delivery status.

`create_app` is imported on first use, so that `import gateway.status` (the CLI,
the migrations, a test of a pure module) does not load the whole web stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from gateway.app import create_app

        return create_app
    raise AttributeError(f"module 'gateway' has no attribute {name!r}")
