"""The per-request context: the only place that creates sessions and loaders."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.responses import Response
from starlette.types import Send
from starlette.websockets import WebSocket

from gateway.auth import Authenticator
from gateway.config import Settings
from gateway.db import RequestDb, SessionFactory
from gateway.enums import Scope
from gateway.errors import Forbidden, Unauthenticated
from gateway.ingest import ChangeCounter
from gateway.live import ChangeFeed
from gateway.loaders import Loaders
from gateway.pubsub import Broker
from gateway.repositories.api_keys import Principal

__all__ = ["Context"]


@dataclass
class Context:
    """What every resolver gets as `info.context`: one per HTTP request or websocket.

    An HTTP request is authenticated before its context exists; a websocket's
    context is authenticated by its `connection_init` payload, which strawberry
    puts in `connection_params`.
    """

    settings: Settings
    session_factory: SessionFactory
    broker: Broker | None
    signing_key: bytes
    feed: ChangeFeed | None = None
    authenticator: Authenticator | None = None
    principal: Principal | None = None
    connection_params: object = None
    connection: WebSocket | None = None
    # The websocket's ASGI `send`: the live fast path writes its frames with it.
    send: Send | None = None
    # The request's id in every log line about it (the X-Request-Id header, or made up).
    request_id: str | None = None
    # An HTTP answer's status and headers before its body exists (strawberry's sub-response).
    response: Response | None = None
    # Counts the status changes a mutation commits (the app's metrics).
    change_counter: ChangeCounter | None = None
    db: RequestDb = field(init=False)
    _loaders: Loaders | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.db = RequestDb(self.session_factory)
        if self.principal is not None:
            self.authenticate(self.principal)

    def authenticate(self, principal: Principal) -> None:
        self.principal = principal
        self._loaders = None

    @property
    def loaders(self) -> Loaders:
        # Made on first use: an idle websocket never needs them.
        if self._loaders is None:
            if self.principal is None:
                raise Unauthenticated("not authenticated")
            self._loaders = Loaders.create(db=self.db, tenant_id=self.principal.tenant_id)
        return self._loaders

    def forget_loaded(self) -> None:
        """Drop what the loaders cached (a subscription outlives one change)."""
        self._loaders = None

    @property
    def tenant_id(self) -> int:
        if self.principal is None:
            raise Unauthenticated("not authenticated")
        return self.principal.tenant_id

    def require(self, scope: Scope) -> None:
        if self.principal is None:
            raise Unauthenticated("not authenticated")
        if not self.principal.can(scope):
            raise Forbidden(f"this API key lacks the {scope.value!r} scope")

    async def close_connection(self, code: int, reason: str) -> None:
        """Close this context's websocket (a subscriber that cannot keep up)."""
        if self.connection is not None:
            await self.connection.close(code=code, reason=reason)

    async def close(self) -> None:
        await self.db.close()
