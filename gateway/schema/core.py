"""What the schema package needs of strawberry beyond its public API, in one place."""

from __future__ import annotations

import strawberry
from graphql import GraphQLSchema

__all__ = ["graphql_schema_of"]


def graphql_schema_of(schema: strawberry.Schema) -> GraphQLSchema:
    """The graphql-core schema under a strawberry schema (what validation, the limits and
    the compiled plans work on).

    Strawberry keeps it in `Schema._schema` and has no public accessor; its own docs and
    extensions read that attribute. This is the one place that does here, and
    tests/unit/test_library_contracts.py fails loudly if a strawberry release moves it.
    """
    return schema._schema
