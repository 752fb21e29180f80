"""Field checks for incoming requests; each failure names the field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from cmo_server.errors import InvalidArgument

__all__ = ["check_id", "check_range", "duration_or", "timestamp_or_now"]

MAX_ID_LENGTH = 128


def check_id(field: str, value: str, *, required: bool = True) -> str:
    """An identifier: 1 to 128 printable characters, no white space."""
    if not value:
        if required:
            raise InvalidArgument(field, "must not be empty")
        return value
    if len(value) > MAX_ID_LENGTH:
        raise InvalidArgument(field, f"is {len(value)} characters long, the limit is {MAX_ID_LENGTH}")
    if not value.isprintable() or any(c.isspace() for c in value):
        raise InvalidArgument(field, "must be printable characters without white space")
    return value


def check_range(field: str, value: int, low: int, high: int) -> int:
    """An integer within [low, high]."""
    if not low <= value <= high:
        raise InvalidArgument(field, f"must be between {low} and {high}, got {value}")
    return value


def duration_or(field: str, msg: Duration, has: bool, default: timedelta, maximum: timedelta) -> timedelta:
    """A Duration field, or the default when unset; must be >= 0 and at most `maximum`."""
    if not has:
        return default
    if msg.seconds < 0 or msg.nanos < 0 or msg.nanos >= 1_000_000_000:
        raise InvalidArgument(field, "must be a non-negative duration")
    value = msg.ToTimedelta()
    if value > maximum:
        raise InvalidArgument(field, f"must be at most {maximum.total_seconds():g}s")
    return value


def timestamp_or_now(field: str, msg: Timestamp, has: bool) -> datetime:
    """A Timestamp field, or now when unset."""
    if not has:
        return datetime.now(UTC)
    try:
        return msg.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidArgument(field, "is not a valid timestamp") from None
