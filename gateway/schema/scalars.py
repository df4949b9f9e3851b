"""The DateTime scalar: ISO-8601 with an offset in, always UTC out."""

from __future__ import annotations

from datetime import UTC, datetime

import strawberry

__all__ = ["DateTime"]


def _serialize(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def _parse(value: object) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"DateTime must be an ISO-8601 string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"DateTime {value[:60]!r} is not ISO-8601") from None
    if parsed.tzinfo is None:
        raise ValueError(f"DateTime {value[:60]!r} needs an offset, such as Z or +01:00")
    return parsed.astimezone(UTC)


DateTime = strawberry.scalar(
    name="DateTime",
    description="ISO-8601 date and time with offset, always UTC on output.",
    specified_by_url="https://scalars.graphql.org/andimarek/date-time",
    serialize=_serialize,
    parse_value=_parse,
)
