"""The live fast path masks the errors of its renders as strawberry's MaskErrors does.

It runs graphql-core's executor itself, so no schema extension sees its results: it
calls the extension's public `should_mask_error` and `anonymise_error` instead.
A strawberry release that renames either fails here, not in production.
"""

from __future__ import annotations

import pytest
from graphql import GraphQLError

from gateway.app import _masked
from gateway.errors import BadInput
from gateway.schema.errors import ExpectedErrors


def _errors() -> list[GraphQLError]:
    return [
        GraphQLError(
            "database password is hunter2", path=["emailStatusChanged", "email"], original_error=RuntimeError("boom")
        ),
        GraphQLError("bad cursor 'x'", path=["emailStatusChanged"], original_error=BadInput("bad cursor 'x'")),
    ]


@pytest.mark.parametrize(("debug", "first"), [(False, "Unexpected error."), (True, "database password is hunter2")])
def test_a_bug_is_masked_outside_debug_and_an_expected_error_keeps_its_words(debug: bool, first: str) -> None:
    # given: the masking the gateway's schema uses
    counted: list[str] = []
    masking = ExpectedErrors(debug=debug, on_error=counted.append)
    # when: a render's errors are masked
    unexpected, expected = _masked(masking, _errors())
    # then: the bug is masked (outside debug) with its path kept; the client's mistake is not
    assert unexpected.message == first
    assert unexpected.path == ["emailStatusChanged", "email"]
    assert expected.message == "bad cursor 'x'"
    assert expected.extensions == {"code": "BAD_USER_INPUT"}
    # and each error is counted once, as strawberry's own pass counts it
    assert counted == ["unexpected", "expected"]
