"""The `emailStatusChanged` subscription: replay from the change log, then live."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Annotated

import orjson
import strawberry
from strawberry.types import Info

from gateway import models
from gateway.context import Context
from gateway.enums import EmailStatus
from gateway.errors import BadInput
from gateway.ids import decode_cursor, decode_id_of, encode_cursor
from gateway.ingest import channel_for_tenant
from gateway.pubsub import Gap
from gateway.repositories import changes as repo
from gateway.repositories.emails import list_emails_by_ids
from gateway.schema.inputs import EmailStatusChangeFilter
from gateway.schema.types.emails import Email
from gateway.schema.types.live import EmailStatusChange

__all__ = ["email_status_changed"]

_REPLAY_BATCH = 500
_CURSOR_KIND = "change"


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

    def admits(self, email: models.Email, status: EmailStatus, documents: set[int]) -> bool:
        return (
            (self.email_ids is None or email.id in self.email_ids)
            and (self.relation_id is None or email.relation_id == self.relation_id)
            and (self.invoice_id is None or email.invoice_id == self.invoice_id)
            and (self.document_id is None or self.document_id in documents)
            and (self.statuses is None or status in self.statuses)
        )


def _cursor(position: int) -> str:
    return encode_cursor(_CURSOR_KIND, None, position)


async def _changes(ctx: Context, after: int, wanted: _Filter) -> list[tuple[int, EmailStatusChange | None]]:
    """The changes after `after`, oldest first: each position, with the change if the filter admits it."""
    async with ctx.db.session() as session:
        rows = await repo.list_changes_after(
            session=session, tenant_id=ctx.tenant_id, after=after, limit=_REPLAY_BATCH
        )
        ids = sorted({r.email_id for r in rows})
        emails = {e.id: e for e in await list_emails_by_ids(session=session, tenant_id=ctx.tenant_id, ids=ids)} if ids else {}
        documents = (
            await repo.list_document_ids_by_email_ids(session=session, tenant_id=ctx.tenant_id, email_ids=ids)
            if ids and wanted.document_id is not None
            else {}
        )
        await session.rollback()  # end the read so that the next one sees newer commits
    found: list[tuple[int, EmailStatusChange | None]] = []
    for row in rows:
        email = emails.get(row.email_id)
        admitted = email is not None and wanted.admits(email, row.status, documents.get(row.email_id, set()))
        change = EmailStatusChange(
            cursor=_cursor(row.id),  # type: ignore[arg-type]
            email=Email(model=email),  # type: ignore[arg-type]
            previous_status=row.previous_status,
            status=row.status,
            changed_at=row.changed_at,
        ) if admitted else None
        found.append((row.id, change))  # type: ignore[arg-type]
    return found


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
    broker = ctx.broker
    if broker is None:
        raise BadInput("live subscriptions are not available on this server")
    position = decode_cursor(since, _CURSOR_KIND)[1] if since is not None else None
    async with broker.subscribe(channel_for_tenant(ctx.tenant_id)) as sub:
        if position is None:
            position = await _latest_position(ctx)
        catch_up = True
        while True:
            if catch_up:
                while batch := await _changes(ctx, position, wanted):
                    for position, change in batch:
                        if change is not None:
                            ctx.loaders.clear_all()
                            yield change
            item = await anext(sub)
            if isinstance(item, Gap):
                catch_up = True
                continue
            announced = orjson.loads(item.data)["position"]
            catch_up = announced > position


async def _latest_position(ctx: Context) -> int:
    async with ctx.db.session() as session:
        rows = await repo.latest_position(session=session, tenant_id=ctx.tenant_id)
        await session.rollback()
    return rows
