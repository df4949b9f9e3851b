"""Global ids and cursors: garbage of every kind is BadInput, never a driver error later."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import BadInput
from gateway.ids import decode_cursor, decode_id, encode_cursor, encode_id


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize("pk", [0, -1, 2**31, 2**53 + 1, 2**62])
def test_an_id_past_the_32_bit_id_columns_is_refused(pk):
    # (found by the schema fuzz test: PostgreSQL answered "value out of int32 range")
    with pytest.raises(BadInput, match="Invalid ID"):
        decode_id(encode_id("Email", pk))


@pytest.mark.parametrize(
    "raw",
    [
        ["email", "9999-12-31T23:59:59-14:00", 1],  # later than year 9999 in UTC
        ["email", "0001-01-01T00:00:00+14:00", 1],  # earlier than year 1 in UTC
        ["email", "2026-01-01T00:00:00+00:00", 2**62],
        ["email", "2026-01-01T00:00:00", 1],  # no offset
    ],
)
def test_a_cursor_whose_time_or_number_cannot_be_used_is_refused(raw):
    with pytest.raises(BadInput, match="Invalid cursor"):
        decode_cursor(_b64(orjson.dumps(raw)), "email")


@given(st.datetimes(timezones=st.just(UTC)), st.integers(min_value=1, max_value=2**31 - 1))
def test_every_cursor_the_gateway_makes_decodes_to_its_key(at: datetime, pk: int):
    assert decode_cursor(encode_cursor("email", at, pk), "email") == (at, pk)
