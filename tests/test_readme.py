"""The README's GraphQL examples are valid against the committed schema."""

from __future__ import annotations

import re
from pathlib import Path

from graphql import build_schema, parse, validate

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_fragment_examples_validate():
    # given every ```graphql block of the README, as one document (the fragment and its uses)
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```graphql\n(.*?)```", readme, flags=re.S)
    schema = build_schema((ROOT / "schema.graphql").read_text())
    # when
    errors = validate(schema, parse("\n".join(blocks)))
    # then
    assert len(blocks) >= 2
    assert errors == []
