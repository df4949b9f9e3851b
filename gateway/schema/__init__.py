"""The GraphQL schema: `build_schema(settings)` with the limits and masking the settings ask for."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from datetime import datetime

import strawberry
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from graphql.pyutils import RefMap

from gateway.config import Settings

from .errors import ExpectedErrors, ReportingSchema
from .root import Mutation, Query, Subscription
from .scalars import DateTime

__all__ = ["SubscriptionExecutionContext", "build_schema", "sdl", "validation_rules"]


class SubscriptionExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Each subscription event gets its own field-collection memo.

    graphql-core 3.3 copies the subscription's executor for every event, and the
    copies share a memo keyed by each event's new field lists, which keeps them
    all alive: a long-lived subscription grew by about 2.4 KB per event.
    """

    def build_per_event_executor(self, payload: Any) -> Any:
        executor = super().build_per_event_executor(payload)
        executor._relevant_sub_fields = {}
        executor._stream_usages = RefMap()
        return executor


def build_schema(settings: Settings, on_error: Callable[[str], None] | None = None) -> strawberry.Schema:
    """The schema with the settings' limits; `on_error(kind)` counts errors for metrics."""
    # Factories: strawberry builds fresh extensions per request. The parser and
    # validation caches live at module level, so they are shared all the same.
    rules = validation_rules(settings)
    extensions: list[object] = [
        lambda: ExpectedErrors(debug=settings.debug, on_error=on_error),
        lambda: MaxTokensLimiter(max_token_count=settings.max_tokens),
        lambda: ParserCache(maxsize=512),
        lambda: AddValidationRules(rules),
        lambda: ValidationCache(maxsize=512),
    ]
    return ReportingSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions,  # type: ignore[arg-type]
        config=_config(),
        execution_context_class=SubscriptionExecutionContext,
    )


def validation_rules(settings: Settings) -> list[Any]:
    """The limits' validation rules, beyond the specification's."""
    # Made once per settings: new rule classes per request would give the
    # validation cache a new key every time, and validation would never be cached.
    rules = [
        *QueryDepthLimiter(max_depth=settings.max_query_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=settings.max_aliases).validation_rules,
    ]
    if not settings.introspection:
        rules.append(NoSchemaIntrospectionCustomRule)
    return rules


def sdl() -> str:
    """The schema in SDL, as committed in schema.graphql."""
    return strawberry.Schema(query=Query, mutation=Mutation, subscription=Subscription, config=_config()).as_str() + "\n"


def _config() -> StrawberryConfig:
    return StrawberryConfig(auto_camel_case=True, scalar_map={datetime: DateTime})
