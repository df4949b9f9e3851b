"""Global ids (`node(id)`) and opaque page cursors. Pure; raise BadInput on garbage."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime

import orjson

from gateway.errors import BadInput

__all__ = [
    "decode_cursor",
    "decode_id",
    "decode_id_of",
    "decode_position",
    "encode_cursor",
    "encode_id",
    "encode_position",
]

_MAX_ID = 2**63 - 1
# The tables' id columns are 32-bit on PostgreSQL: a larger number in an id or cursor
# is garbage, and must be refused here rather than overflow the driver.
_MAX_ROW_ID = 2**31 - 1


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    if not text or len(text) > 200:
        raise ValueError("bad length")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_id(type_name: str, pk: int) -> str:
    """Relay-style global id: base64 of `Type:pk`."""
    return _b64(f"{type_name}:{pk}".encode())


def decode_id(value: str) -> tuple[str, int]:
    """`(type name, primary key)` of a global id; BadInput names the id when it is garbage."""
    try:
        type_name, _, raw_pk = _unb64(value).decode().partition(":")
        pk = int(raw_pk)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadInput(f"Invalid ID {value[:100]!r}") from None
    if not type_name or not 0 < pk <= _MAX_ROW_ID:
        raise BadInput(f"Invalid ID {value[:100]!r}")
    return type_name, pk


def decode_id_of(value: str, type_name: str) -> int:
    """The primary key of a global id that must name a `type_name`."""
    found, pk = decode_id(value)
    if found != type_name:
        raise BadInput(f"ID {value[:100]!r} is not a {type_name} id")
    return pk


def encode_cursor(kind: str, sent_at: datetime | None, pk: int) -> str:
    """An opaque keyset cursor: the sort key of the row it points after."""
    return _b64(orjson.dumps([kind, sent_at.isoformat() if sent_at else None, pk]))


def decode_cursor(value: str, kind: str) -> tuple[datetime | None, int]:
    """The sort key in a cursor made by `encode_cursor(kind, ...)`; BadInput otherwise."""
    try:
        found, raw_time, pk = orjson.loads(_unb64(value))
        if found != kind or not isinstance(pk, int) or isinstance(pk, bool):
            raise ValueError("wrong cursor kind")
        sent_at = datetime.fromisoformat(raw_time) if raw_time is not None else None
        if sent_at is not None:
            if sent_at.tzinfo is None:
                raise ValueError("naive time")
            sent_at = sent_at.astimezone(UTC)  # a time past year 9999 in UTC overflows here
    except (ValueError, TypeError, OverflowError, binascii.Error, orjson.JSONDecodeError):
        raise BadInput(f"Invalid cursor {value[:100]!r}") from None
    if not 0 < pk <= _MAX_ROW_ID:
        raise BadInput(f"Invalid cursor {value[:100]!r}")
    return sent_at, pk


def encode_position(position: tuple[int, int]) -> str:
    """An opaque change-log cursor: the (transaction, id) position of a change."""
    return _b64(orjson.dumps(["change", position[0], position[1]]))


def decode_position(value: str) -> tuple[int, int]:
    """The position in a cursor made by `encode_position`; BadInput otherwise."""
    try:
        kind, txid, pk = orjson.loads(_unb64(value))
        if kind != "change" or not all(type(v) is int for v in (txid, pk)):
            raise ValueError("not a change cursor")
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise BadInput(f"Invalid cursor {value[:100]!r}") from None
    if not (0 <= txid <= _MAX_ID and 0 < pk <= _MAX_ID):
        raise BadInput(f"Invalid cursor {value[:100]!r}")
    return txid, pk
