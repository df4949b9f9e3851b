"""The library internals the gateway relies on, where no public API exists: each test
fails loudly, naming the library and version, when a release moves what is used."""

from __future__ import annotations

from importlib.metadata import version

import strawberry
from graphql import GraphQLSchema

from gateway.schema import graphql_schema_of


@strawberry.type
class _Query:
    @strawberry.field
    def ping(self) -> str:
        return "pong"


def test_strawberry_keeps_the_graphql_core_schema_in_schema_underscore_schema() -> None:
    # given
    schema = strawberry.Schema(query=_Query)
    # when
    core = graphql_schema_of(schema)
    # then
    assert isinstance(core, GraphQLSchema), (
        f"strawberry-graphql {version('strawberry-graphql')} no longer keeps its graphql-core schema "
        "in Schema._schema: update gateway.schema.core.graphql_schema_of"
    )
    assert core.query_type is not None
    assert "ping" in core.query_type.fields
