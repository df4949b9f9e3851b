"""The GraphQL schema: `build_schema(settings)` with the limits and masking the settings ask for."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

import strawberry
from graphql import DocumentNode, GraphQLError, GraphQLSchema, specified_rules, validate
from graphql.pyutils import RefMap
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import (
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule

from gateway.config import Settings

from .core import graphql_schema_of
from .errors import ExpectedErrors, ReportingSchema
from .limits import Limits, RequestLimits
from .scalars import DateTime

__all__ = [
    "SubscriptionExecutionContext",
    "Validator",
    "build_schema",
    "graphql_schema_of",
    "limits_of",
    "sdl",
    "validation_rules",
]

Validator = Callable[[GraphQLSchema, DocumentNode], list[GraphQLError]]


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


class _WithoutSuggestions(SubscriptionExecutionContext):
    """Variable and argument errors without "Did you mean ...?" (production mode).

    Suggestions name fields and values of the schema, which is what turning
    introspection off hides; graphql-core leaves them out when asked to.
    """

    @classmethod
    def build(cls, *args: Any, **kwargs: Any) -> Any:
        kwargs["hide_suggestions"] = True
        return super().build(*args, **kwargs)


class _Validation(SchemaExtension):
    """Validation with the gateway's rules, cached per document (strawberry's ParserCache
    hands the same document object back for the same query text)."""

    def __init__(self, *, validator: Validator) -> None:
        self.validator = validator

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if context.graphql_document is not None:
            # Setting the errors (an empty list included) tells strawberry validation is done.
            context.pre_execution_errors = self.validator(graphql_schema_of(context.schema), context.graphql_document)
        yield


def build_schema(
    settings: Settings,
    on_error: Callable[[str], None] | None = None,
    extra_extensions: Sequence[Callable[[], SchemaExtension]] = (),
) -> strawberry.Schema:
    """The schema with the settings' limits; `on_error(kind)` counts errors for metrics;
    `extra_extensions` are factories of more extensions (tracing)."""
    # Factories: strawberry builds fresh extensions per request. The parser cache
    # lives at module level and the validator is made once here, so they are shared.
    from .root import Mutation, Query, Subscription  # the root fields import the resolvers, which import this package

    validator = validation_rules(settings)
    limits = limits_of(settings)
    extensions: list[Callable[[], SchemaExtension]] = [
        lambda: ExpectedErrors(debug=settings.debug, on_error=on_error),
        lambda: MaxTokensLimiter(max_token_count=settings.max_tokens),
        lambda: ParserCache(maxsize=512),
        lambda: _Validation(validator=validator),
        lambda: RequestLimits(limits=limits),
        *extra_extensions,
    ]
    return ReportingSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions,
        config=_config(),
        execution_context_class=SubscriptionExecutionContext if settings.suggestions else _WithoutSuggestions,
    )


def limits_of(settings: Settings) -> Limits:
    """The limits that need a request's variables (`gateway.schema.limits`)."""
    return Limits(
        max_query_cost=settings.max_query_cost,
        max_page_size=settings.max_page_size,
        max_list_size=settings.max_list_size,
        max_execution_seconds=settings.max_execution_seconds,
    )


def validation_rules(settings: Settings) -> Validator:
    """Validation of a document: the specification's rules, Strawberry's, and the limits.

    Cached per document; made once per settings, so the rule classes stay the same
    and the cache keeps hitting.
    """
    rules = [
        *specified_rules,
        MaybeNullValidationRule,
        OneOfInputValidationRule,
        *QueryDepthLimiter(max_depth=settings.max_query_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=settings.max_aliases).validation_rules,
    ]
    if not settings.introspection:
        rules.append(NoSchemaIntrospectionCustomRule)
    hide = not settings.suggestions

    @lru_cache(maxsize=512)
    def validator(schema: GraphQLSchema, document: DocumentNode) -> list[GraphQLError]:
        return validate(schema, document, rules, hide_suggestions=hide)

    return validator


def sdl() -> str:
    """The schema in SDL, as committed in schema.graphql."""
    from .root import Mutation, Query, Subscription

    return (
        strawberry.Schema(query=Query, mutation=Mutation, subscription=Subscription, config=_config()).as_str() + "\n"
    )


def _config() -> StrawberryConfig:
    return StrawberryConfig(auto_camel_case=True, scalar_map={datetime: DateTime})
