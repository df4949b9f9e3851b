"""schema.graphql is generated from the code, committed, documented, and keeps the contract."""

from __future__ import annotations

from pathlib import Path

from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    build_schema,
)
from graphql.utilities import find_breaking_changes

from gateway.schema import sdl

ROOT = Path(__file__).resolve().parent.parent
# A copy of the published public contract, kept in the repository so the suite reads
# nothing outside it. The published file is the reference: when it changes, copy it
# here again, byte for byte (`cp <published>/contract.graphql tests/schema/`).
CONTRACT = ROOT / "tests" / "schema" / "contract.graphql"


def test_committed_schema_matches_the_code() -> None:
    committed = (ROOT / "schema.graphql").read_text()
    assert committed == sdl(), "schema.graphql drifted: run `gateway export-schema` and commit it"


def test_schema_keeps_the_public_contract() -> None:
    changes = find_breaking_changes(build_schema(CONTRACT.read_text()), build_schema(sdl()))
    assert [f"{c.type.name}: {c.description}" for c in changes] == []


def test_every_type_field_argument_and_value_is_described() -> None:
    schema = build_schema(sdl())
    missing = []
    for name, kind in schema.type_map.items():
        if name.startswith("__") or name in {"String", "Int", "Boolean", "ID", "Float"}:
            continue
        if not kind.description:
            missing.append(name)
        if isinstance(kind, GraphQLObjectType | GraphQLInterfaceType | GraphQLInputObjectType):
            for field_name, field in kind.fields.items():
                if not field.description:
                    missing.append(f"{name}.{field_name}")
                for arg_name, arg in getattr(field, "args", {}).items():
                    if not arg.description:
                        missing.append(f"{name}.{field_name}({arg_name})")
        if isinstance(kind, GraphQLEnumType):
            missing += [f"{name}.{v}" for v, value in kind.values.items() if not value.description]
    assert missing == []
