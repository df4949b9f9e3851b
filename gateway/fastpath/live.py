"""The live fast path: each change rendered once per shared selection, then sent to all.

Strawberry runs a subscription's selection once per change and per subscriber:
with thousands of subscribers on one tenant, one change costs thousands of
identical executions. Here, a subscription whose document is a valid
`emailStatusChanged` operation joins a group of the subscriptions with the same
tenant, document, operation and variables. Each change is executed once per group
(with graphql-core's executor, the reference's own, on a fresh context), encoded
once, and the same text goes to every subscriber of the group, behind its own
operation id. The stream itself (filter, replay after `since`, seam, slow
consumers) is the reference's `status_changes`.

Anything else (another operation, an invalid document, bad variables, a bad
filter or cursor) runs on strawberry, which answers it, errors included: the
fast path falls back before it sends anything. Differential tests
(`tests/live/test_live_differential.py`) hold both to the same frames.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import functools
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from typing import Any

import orjson
from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    GraphQLError,
    GraphQLField,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    get_operation_ast,
    parse,
)
from graphql.execution import Executor
from graphql.execution.values import get_argument_values

from gateway import models
from gateway.context import Context
from gateway.errors import DomainError
from gateway.live import FeedItem, SlowConsumer
from gateway.repositories.changes import Position
from gateway.schema import SubscriptionExecutionContext, Validator
from gateway.schema.limits import Limits, check_request
from gateway.schema.resolvers.live import ChangeFilter, payload, status_changes

__all__ = ["LiveFastPath", "LivePlan", "Outcome"]

log = logging.getLogger(__name__)

_FIELD = "emailStatusChanged"
_PLANS = 512  # distinct documents remembered
_RENDERS = 8  # recent changes remembered per group: subscribers a little behind still share
_PREPARE_SECONDS = 1.0  # how long the feed waits for a change's renders before it goes on


class Outcome(enum.Enum):
    REFERENCE = "reference"  # nothing sent: strawberry must run the operation
    ENDED = "ended"  # the stream ended: the operation completes
    CLOSED = "closed"  # the socket was closed (a slow consumer): nothing more to send


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class LivePlan:
    """A validated subscription document whose one root field is `emailStatusChanged`."""

    document: DocumentNode
    operation: OperationDefinitionNode
    operation_name: str | None
    field: FieldNode
    definition: GraphQLField


class _Group:
    """The subscriptions that share tenant, plan and variables: one render per change."""

    __slots__ = ("context", "executor", "members", "renders", "wanted")

    def __init__(self, executor: Executor[Any], wanted: ChangeFilter, context: Context) -> None:
        self.executor = executor
        self.wanted = wanted  # the same for every member: same document, same variables
        # For the tenant and settings of each render; without the member's socket,
        # which may go while the group stays.
        self.context = dataclasses.replace(context, connection=None, connection_params=None, send=None)
        self.members = 0
        self.renders: OrderedDict[Position, asyncio.Future[str]] = OrderedDict()

    def rendered(self, position: Position) -> str | None:
        """The change's text if its render is done (without error), else None."""
        future = self.renders.get(position)
        if future is None or not future.done() or future.cancelled() or future.exception() is not None:
            return None
        return future.result()


class _Member:
    """One subscription of a group, and its sink: the group's text behind its operation id.

    The feed awaits it for each change the member's filter admits, in the feed's
    task while the socket keeps up, else in the listener's (`gateway.live.Listener`).
    """

    __slots__ = ("fast", "group", "prefix", "send_text")

    def __init__(
        self, fast: LiveFastPath, group: _Group, prefix: str, send_text: Callable[[str], Awaitable[None]]
    ) -> None:
        self.fast = fast
        self.group = group
        self.prefix = prefix
        self.send_text = send_text

    async def __call__(self, item: FeedItem) -> None:
        text = self.group.rendered(item.position)
        if text is None:  # not rendered before it went out (slow, or failed): here, or raise
            text = await self.fast.rendered(self.group, item.position, item.change, item.email)
        await self.send_text(self.prefix + text + "}")


class LiveFastPath:
    def __init__(
        self,
        schema: GraphQLSchema,
        *,
        validator: Validator,
        limits: Limits,
        max_tokens: int,
        mask: Callable[[list[GraphQLError]], list[GraphQLError]],
    ) -> None:
        self._schema = schema
        self._validator = validator
        self._limits = limits
        self._max_tokens = max_tokens
        self._mask = mask
        # The plan for a document, or None when strawberry must run it; the newest remembered.
        self.plan: Callable[[str, str | None], LivePlan | None] = functools.lru_cache(maxsize=_PLANS)(self._compile)
        self._groups: dict[tuple[int, LivePlan, bytes], _Group] = {}
        self._by_tenant: dict[int, set[_Group]] = {}
        self.renders = 0  # executions, for metrics and tests: far fewer than messages sent

    @property
    def group_count(self) -> int:
        return len(self._groups)

    def _compile(self, query: str, operation_name: str | None) -> LivePlan | None:
        try:
            document = parse(query, max_tokens=self._max_tokens)
        except GraphQLError:
            return None
        if self._validator(self._schema, document):
            return None
        # None when the name matches nothing, or when none is given and there are several.
        operation = get_operation_ast(document, operation_name)
        if operation is None or operation.operation is not OperationType.SUBSCRIPTION:
            return None
        selections = operation.selection_set.selections
        if len(selections) != 1 or not isinstance(selections[0], FieldNode):
            return None  # a fragment or an inline fragment at the root: the reference's job
        field = selections[0]
        if field.name.value != _FIELD or field.directives:
            return None
        subscription = self._schema.subscription_type
        assert subscription is not None  # noqa: S101  (validated above)
        return LivePlan(document, operation, operation_name, field, subscription.fields[_FIELD])

    async def run(
        self,
        plan: LivePlan,
        *,
        operation_id: str,
        variables: dict[str, Any] | None,
        context: Context,
        send_text: Callable[[str], Awaitable[None]],
    ) -> Outcome:
        """Stream the subscription; REFERENCE (before anything is sent) when it cannot."""
        try:
            check_request(self._schema, plan.document, plan.operation, variables, self._limits)
        except GraphQLError:
            return Outcome.REFERENCE  # the reference refuses it, with the same check
        executor = SubscriptionExecutionContext.build(
            self._schema, plan.document, raw_variable_values=variables, operation_name=plan.operation_name
        )
        if isinstance(executor, list):
            return Outcome.REFERENCE  # variables that do not coerce: the reference says why
        try:
            arguments = get_argument_values(plan.definition, plan.field, executor.variable_values)
            wanted = ChangeFilter.from_arguments(arguments.get("filter"))
        except (GraphQLError, DomainError):
            return Outcome.REFERENCE
        tenant_id = context.tenant_id
        key = (tenant_id, plan, orjson.dumps(variables or {}, option=orjson.OPT_SORT_KEYS))
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(executor, wanted, context)
            self._by_tenant.setdefault(tenant_id, set()).add(group)
        group.members += 1
        member = _Member(
            self, group, f'{{"id":{orjson.dumps(operation_id).decode()},"type":"next","payload":', send_text
        )
        sent = False
        try:
            # The replay comes out of the generator; the live changes go through the member.
            async with aclosing(status_changes(context, wanted, arguments.get("since"), member)) as replayed:
                async for position, change, email in replayed:
                    text = await self.rendered(group, position, change, email)
                    await send_text(member.prefix + text + "}")
                    sent = True
        except DomainError:
            if sent:
                raise
            return Outcome.REFERENCE  # a bad cursor, no feed: the reference raises it again
        except SlowConsumer:
            return Outcome.CLOSED
        finally:
            group.members -= 1
            if not group.members and self._groups.get(key) is group:
                del self._groups[key]
                self._by_tenant[tenant_id].discard(group)
                if not self._by_tenant[tenant_id]:
                    del self._by_tenant[tenant_id]
        return Outcome.ENDED

    async def prepare(self, item: FeedItem) -> None:
        """Render a change for every group that will send it, before it goes out."""
        groups = self._by_tenant.get(item.change.tenant_id)
        if not groups:
            return
        renders = [
            self._render_of(group, item.position, item.change, item.email)
            for group in tuple(groups)
            if group.wanted.admits(item.change, item.email, item.document_ids)
        ]
        if renders:
            # Their errors stay with them, for the members. A render that takes long
            # (a slow database) does not hold the feed: its members wait for it.
            await asyncio.wait(renders, timeout=_PREPARE_SECONDS)

    def _render_of(
        self, group: _Group, position: Position, change: models.StatusChange, email: models.Email
    ) -> asyncio.Future[str]:
        future = group.renders.get(position)
        if future is None:
            future = asyncio.ensure_future(self._render(group, change, email))
            future.add_done_callback(_retrieved)
            group.renders[position] = future
            if len(group.renders) > _RENDERS:
                group.renders.popitem(last=False)
        return future

    async def rendered(
        self, group: _Group, position: Position, change: models.StatusChange, email: models.Email
    ) -> str:
        future = self._render_of(group, position, change, email)
        if future.done():
            return future.result()
        # Shielded: a subscriber that leaves does not cancel the others' render.
        return await asyncio.shield(future)

    async def _render(self, group: _Group, change: models.StatusChange, email: models.Email) -> str:
        self.renders += 1
        # A context of its own: fresh loaders, its own session, no socket to close.
        own = dataclasses.replace(group.context)
        executor: Executor[Any] = group.executor.build_per_event_executor(payload(change, email))
        executor.context_value = own
        try:
            executed = executor.execute_operation(False)
            result = await executed if executor.is_awaitable(executed) else executed
        finally:
            await own.close()
        if not isinstance(result, ExecutionResult):  # incremental delivery: no @defer or @stream in the schema
            raise TypeError(f"a subscription event gave {type(result).__name__}, not one result")
        message: dict[str, Any] = {"data": result.data}
        if result.errors:
            message["errors"] = [e.formatted for e in self._mask(list(result.errors))]
        return orjson.dumps(message).decode()


def _retrieved(future: asyncio.Future[Any]) -> None:
    # A render or a send that failed is reported to whoever awaits it; nobody may.
    if not future.cancelled():
        future.exception()
