"""The `emailStatusChanged` subscription: replay after a cursor, then the live feed.

With `since`, the changes after that cursor are read from the change log first;
the listener is registered on the feed before that, so the seam has no gap, and
anything at or before the last position sent is skipped, so it has no duplicate.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Annotated

import strawberry
from strawberry.types import Info

from gateway import models
from gateway.context import Context
from gateway.enums import EmailStatus
from gateway.errors import BadInput
from gateway.ids import decode_id_of, decode_position, encode_position
from gateway.live import SlowConsumer
from gateway.repositories import changes as repo
from gateway.schema.inputs import EmailStatusChangeFilter
from gateway.schema.types.emails import Email
from gateway.schema.types.live import EmailStatusChange

__all__ = ["SLOW_CONSUMER_CLOSE_CODE", "email_status_changed"]

log = logging.getLogger(__name__)

# "Try Again Later": the client reconnects and resumes with `since`.
SLOW_CONSUMER_CLOSE_CODE = 1013
_REPLAY_BATCH = 500


@dataclass(frozen=True, slots=True)
class _Filter:
    email_ids: frozenset[int] | None
    relation_id: int | None
    document_id: int | None
    invoice_id: int | None
    statuses: frozenset[EmailStatus] | None

    @classmethod
    def of(cls, f: EmailStatusChangeFilter | None) -> _Filter:
        if f is None:
            return cls(None, None, None, None, None)
        return cls(
            email_ids=frozenset(decode_id_of(i, "Email") for i in f.email_ids) if f.email_ids is not None else None,
            relation_id=decode_id_of(f.relation_id, "Relation") if f.relation_id is not None else None,
            document_id=decode_id_of(f.document_id, "Document") if f.document_id is not None else None,
            invoice_id=decode_id_of(f.invoice_id, "Invoice") if f.invoice_id is not None else None,
            statuses=frozenset(EmailStatus(s) for s in f.statuses) if f.statuses is not None else None,
        )

    def admits(self, change: models.StatusChange, email: models.Email, documents: frozenset[int] | None) -> bool:
        return (
            (self.email_ids is None or email.id in self.email_ids)
            and (self.relation_id is None or email.relation_id == self.relation_id)
            and (self.invoice_id is None or email.invoice_id == self.invoice_id)
            and (self.document_id is None or self.document_id in (documents or ()))
            and (self.statuses is None or change.status in self.statuses)
        )


def _payload(change: models.StatusChange, email: models.Email) -> EmailStatusChange:
    return EmailStatusChange(
        cursor=encode_position((change.txid, change.id)),  # type: ignore[arg-type]
        email=Email(model=email),
        previous_status=change.previous_status,
        status=change.status,
        changed_at=change.changed_at,
    )


async def _replay(
    ctx: Context, after: repo.Position, wanted: _Filter
) -> AsyncGenerator[tuple[repo.Position, EmailStatusChange | None], None]:
    while True:
        # A short session of its own per batch: each batch sees the newest commits,
        # and the rows stay readable once it is closed.
        async with ctx.session_factory() as session:
            rows = await repo.list_changes_after(
                session=session, after=after, limit=_REPLAY_BATCH, tenant_id=ctx.tenant_id
            )
            documents = (
                await repo.list_document_ids_by_email_ids(session=session, email_ids=sorted({c.email_id for c, _ in rows}))
                if rows and wanted.document_id is not None
                else {}
            )
        for change, email in rows:
            after = (change.txid, change.id)  # type: ignore[assignment]
            admitted = wanted.admits(change, email, documents.get(change.email_id))
            yield after, _payload(change, email) if admitted else None
        if len(rows) < _REPLAY_BATCH:
            return


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
    wanted = _Filter.of(filter)
    feed = ctx.feed
    if feed is None:
        raise BadInput("live subscriptions are not available on this server")
    start = decode_position(since) if since is not None else None
    if start is not None:
        async with ctx.session_factory() as session:
            known = await repo.change_exists(session=session, tenant_id=ctx.tenant_id, position=start)
        if not known:
            raise BadInput(f"unknown or expired cursor {since[:100]!r}: subscribe without `since`")  # type: ignore[index]
    async with feed.listen(ctx.tenant_id, wants_documents=wanted.document_id is not None) as listener:
        if start is None:
            # Live from now: what was committed before subscribing is not news,
            # even if this process's feed has not read it yet.
            async with ctx.session_factory() as session:
                start = await repo.latest_position(session=session)
        position = start
        if since is not None:
            async for replayed, change in _replay(ctx, start, wanted):
                position = replayed
                if change is not None:
                    ctx.forget_loaded()
                    yield change
        listener.ready = True
        try:
            async for item in listener:
                if item.position <= position:
                    continue  # already sent by the replay
                position = item.position
                if wanted.admits(item.change, item.email, item.document_ids):
                    ctx.forget_loaded()
                    yield _payload(item.change, item.email)
        except SlowConsumer:
            log.info("closing a slow subscriber of tenant %s at %s", ctx.tenant_id, position)
            await ctx.close_connection(SLOW_CONSUMER_CLOSE_CODE, "slow consumer: resume with since")
            raise
