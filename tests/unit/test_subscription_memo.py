"""Subscription events do not accumulate in the executor's shared memo."""

from __future__ import annotations

from graphql import parse

from gateway.config import Settings
from gateway.schema import SubscriptionExecutionContext, build_schema


def test_each_event_gets_a_fresh_field_memo() -> None:
    # given: the executor of a subscription, as graphql-core builds it
    schema = build_schema(Settings(secret_key="x" * 8 + "abcdefghijklmnopqrstuvwxyz0123"))
    executor = SubscriptionExecutionContext.build(
        schema._schema, parse("subscription { emailStatusChanged { cursor } }")
    )
    assert not isinstance(executor, list), executor  # validation errors come back as a list
    executor._relevant_sub_fields[("seen", 1)] = ("fields", "collected")  # type: ignore[index]
    # when: two events arrive
    first, second = executor.build_per_event_executor({}), executor.build_per_event_executor({})
    # then: neither shares (nor keeps alive) what the subscription or the other collected
    assert first._relevant_sub_fields == {} and second._relevant_sub_fields == {}
    assert first._relevant_sub_fields is not second._relevant_sub_fields
    assert first._stream_usages is not executor._stream_usages
