"""The `emailStatusChanged` subscription: replay after a cursor, then the live feed.

With `since`, the changes after that cursor are read from the change log first;
the listener is registered on the feed before that, so the seam has no gap, and
anything at or before the last position sent is skipped, so it has no duplicate.

Stock clients (graphql-ws, Apollo) resubscribe after a drop with their first
variables, so `since` never reaches the server. They resume through their
`connectionParams` instead, which graphql-ws evaluates again on every
reconnect: `resume` maps an operation id (graphql-ws keeps it across retries)
to the last cursor the client received for it. A subscription that arrives
without `since` under an id found there replays after that cursor. The client
seeds each new operation with the cursor of the `connection_ack` payload (the
tenant's newest change when it connected), so an operation that had received
nothing yet resumes too. The state is the client's: a server restart or another
replica loses nothing, and only what the client really received counts.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, Iterator, Sequence
from contextlib import aclosing
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated, Any

import strawberry
from strawberry.types import Info

from gateway import models
from gateway.context import Context
from gateway.enums import EmailStatus
from gateway.errors import BadInput
from gateway.ids import decode_id_of, decode_position, encode_position
from gateway.live import Sink, SlowConsumer, position_of
from gateway.repositories import changes as repo
from gateway.schema.inputs import EmailStatusChangeFilter
from gateway.schema.types.emails import Email
from gateway.schema.types.live import EmailStatusChange

__all__ = [
    "SLOW_CONSUMER_CLOSE_CODE",
    "ChangeFilter",
    "connection_resume",
    "email_status_changed",
    "payload",
    "resume_point",
    "resuming",
    "status_changes",
]

log = logging.getLogger(__name__)

# "Try Again Later": the client reconnects and resumes with `since`.
SLOW_CONSUMER_CLOSE_CODE = 1013
_REPLAY_BATCH = 500
# The log's beginning, for a tenant with no change yet: no change has this cursor,
# so it is recognised as it is, before any check of a change's position.
_BEGINNING: repo.Position = (0, 0)
_BEGINNING_CURSOR = encode_position(_BEGINNING)
_RESUME_KEY = 128  # characters of an operation id in `resume`
_RESUME_ENTRIES = 1000  # operation ids in `resume`: far more than a socket may run at once

# The cursor a websocket operation resumes from when it comes without `since`:
# set by the transport for the operation's task, read by `status_changes`.
_resumed: ContextVar[str | None] = ContextVar("resumed", default=None)


def connection_resume(params: object) -> dict[str, str]:
    """The `resume` map of a connection_init payload, checked; BadInput when malformed."""
    resume = params.get("resume") if isinstance(params, dict) else None
    if resume is None:
        return {}
    if not isinstance(resume, dict) or len(resume) > _RESUME_ENTRIES:
        raise BadInput(f"`resume` must be an object of at most {_RESUME_ENTRIES} operation ids and their last cursors")
    for key, cursor in resume.items():
        if len(key) > _RESUME_KEY or not isinstance(cursor, str):
            raise BadInput(f"`resume` entry {key[:_RESUME_KEY]!r} must map an operation id to a cursor string")
        if cursor != _BEGINNING_CURSOR:
            decode_position(cursor)
    return resume


@contextlib.contextmanager
def resuming(cursor: str | None) -> Iterator[None]:
    """Within it, a subscription without `since` replays after `cursor`."""
    token = _resumed.set(cursor)
    try:
        yield
    finally:
        _resumed.reset(token)


async def resume_point(ctx: Context) -> str:
    """A cursor for the connection_ack: the tenant's newest change, or the log's beginning.

    A subscription started on this connection misses nothing after it, so a client
    that seeds its new operations with it resumes them even before their first change.
    """
    async with ctx.session_factory() as session:
        return encode_position(await repo.latest_position(session=session, tenant_id=ctx.tenant_id))


@dataclass(frozen=True, slots=True)
class ChangeFilter:
    """A subscriber's filter, decoded once: every part given must match (AND)."""

    email_ids: frozenset[int] | None
    relation_id: int | None
    document_id: int | None
    invoice_id: int | None
    statuses: frozenset[EmailStatus] | None

    @classmethod
    def of(cls, f: EmailStatusChangeFilter | None) -> ChangeFilter:
        if f is None:
            return cls(None, None, None, None, None)
        return cls.decode(f.email_ids, f.relation_id, f.document_id, f.invoice_id, f.statuses)

    @classmethod
    def from_arguments(cls, raw: dict[str, Any] | None) -> ChangeFilter:
        """From the argument as graphql-core coerces it (camelCase keys, enums)."""
        if raw is None:
            return cls(None, None, None, None, None)
        return cls.decode(
            raw.get("emailIds"), raw.get("relationId"), raw.get("documentId"), raw.get("invoiceId"), raw.get("statuses")
        )

    @classmethod
    def decode(
        cls,
        email_ids: Sequence[str] | None,
        relation_id: str | None,
        document_id: str | None,
        invoice_id: str | None,
        statuses: Sequence[EmailStatus | str] | None,
    ) -> ChangeFilter:
        return cls(
            email_ids=frozenset(decode_id_of(i, "Email") for i in email_ids) if email_ids is not None else None,
            relation_id=decode_id_of(relation_id, "Relation") if relation_id is not None else None,
            document_id=decode_id_of(document_id, "Document") if document_id is not None else None,
            invoice_id=decode_id_of(invoice_id, "Invoice") if invoice_id is not None else None,
            statuses=frozenset(EmailStatus(s) for s in statuses) if statuses is not None else None,
        )

    @property
    def wants_documents(self) -> bool:
        return self.document_id is not None

    def admits(self, change: models.StatusChange, email: models.Email, documents: frozenset[int] | None) -> bool:
        return (
            (self.email_ids is None or email.id in self.email_ids)
            and (self.relation_id is None or email.relation_id == self.relation_id)
            and (self.invoice_id is None or email.invoice_id == self.invoice_id)
            and (self.document_id is None or self.document_id in (documents or ()))
            and (self.statuses is None or change.status in self.statuses)
        )


def payload(change: models.StatusChange, email: models.Email) -> EmailStatusChange:
    return EmailStatusChange(
        cursor=encode_position(position_of(change)),
        email=Email(model=email),
        previous_status=change.previous_status,
        status=change.status,
        changed_at=change.changed_at,
    )


async def _replay(
    ctx: Context, after: repo.Position, wanted: ChangeFilter
) -> AsyncGenerator[tuple[repo.Position, models.StatusChange | None, models.Email], None]:
    while True:
        # A short session of its own per batch: each batch sees the newest commits,
        # and the rows stay readable once it is closed.
        async with ctx.session_factory() as session:
            rows = await repo.list_changes_after(
                session=session, after=after, limit=_REPLAY_BATCH, tenant_id=ctx.tenant_id
            )
            documents = (
                await repo.list_document_ids_by_email_ids(
                    session=session, email_ids=sorted({c.email_id for c, _ in rows})
                )
                if rows and wanted.document_id is not None
                else {}
            )
        for change, email in rows:
            after = position_of(change)
            admitted = wanted.admits(change, email, documents.get(change.email_id))
            yield after, change if admitted else None, email
        if len(rows) < _REPLAY_BATCH:
            return


async def status_changes(
    ctx: Context,
    wanted: ChangeFilter,
    since: str | None,
    sink: Sink | None = None,
) -> AsyncGenerator[tuple[repo.Position, models.StatusChange, models.Email], None]:
    """The subscriber's changes: the replay after `since`, then the live feed, each once.

    Setup errors (no feed, an unknown cursor) are raised before anything is
    yielded. Both the reference resolver and the live fast path stream from here.
    With a `sink` (the fast path), only the replay is yielded: the live changes
    go through the sink, and the generator waits until the subscription ends.
    """
    feed = ctx.feed
    if feed is None:
        raise BadInput("live subscriptions are not available on this server")
    if since is None:
        since = _resumed.get()
    start: repo.Position | None = None
    if since is not None:
        start = _BEGINNING if since == _BEGINNING_CURSOR else decode_position(since)
        if start != _BEGINNING:
            async with ctx.session_factory() as session:
                known = await repo.change_exists(session=session, tenant_id=ctx.tenant_id, position=start)
            if not known:
                raise BadInput(f"unknown or expired cursor {since[:100]!r}: subscribe without `since`")
    async with feed.listen(ctx.tenant_id, wanted, sink=sink) as listener:
        if start is None:
            # Live from now: what was committed before subscribing is not news,
            # even if this process's feed has not read it yet.
            async with ctx.session_factory() as session:
                start = await repo.latest_position(session=session)
        position = start
        if since is not None:
            async for replayed, admitted, email in _replay(ctx, start, wanted):
                position = replayed
                if admitted is not None:
                    yield replayed, admitted, email
        try:
            if sink is not None:
                await listener.live(position)  # the feed filters; the listener skips the seam
            else:
                listener.start(position)
                async for item in listener:
                    yield item.position, item.change, item.email
        except SlowConsumer:
            log.info("closing a slow subscriber of tenant %s at %s", ctx.tenant_id, listener.position)
            await ctx.close_connection(SLOW_CONSUMER_CLOSE_CODE, "slow consumer: resume with since")
            raise


async def email_status_changed(
    info: Info[Context, None],
    filter: Annotated[  # noqa: A002
        EmailStatusChangeFilter | None, strawberry.argument(description="Which changes to receive.")
    ] = None,
    since: Annotated[
        str | None,
        strawberry.argument(description="A cursor from an earlier change: replay every change after it first."),
    ] = None,
) -> AsyncGenerator[EmailStatusChange, None]:
    ctx = info.context
    async with aclosing(status_changes(ctx, ChangeFilter.of(filter), since)) as changes:
        async for _, change, email in changes:
            ctx.forget_loaded()
            yield payload(change, email)
            # Resumed once the change's selection is executed and sent: end the
            # session its loaders used, so no connection idles in a transaction.
            await ctx.db.release()
