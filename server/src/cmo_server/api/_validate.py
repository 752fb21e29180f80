"""Field checks for incoming requests; each failure names the field."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from cmo_server.errors import InvalidArgument

__all__ = ["check_duration", "check_id", "check_range", "check_text", "duration_or", "nul_field", "timestamp_or_now"]

MAX_ID_LENGTH = 128
NANOS_PER_SECOND = 1_000_000_000


def check_id(field: str, value: str, *, required: bool = True) -> str:
    """An identifier: 1 to 128 printable characters, no white space."""
    if not value:
        if required:
            raise InvalidArgument(field, "must not be empty")
        return value
    check_text(field, value, MAX_ID_LENGTH)
    if not value.isprintable() or any(c.isspace() for c in value):
        raise InvalidArgument(field, "must be printable characters without white space")
    return value


def check_text(field: str, value: str, limit: int) -> str:
    """A free text of at most `limit` characters (NUL characters never reach a servicer)."""
    if len(value) > limit:
        raise InvalidArgument(field, f"is {len(value)} characters long, the limit is {limit}")
    return value


def check_range(field: str, value: int, low: int, high: int) -> int:
    """An integer within [low, high]."""
    if not low <= value <= high:
        raise InvalidArgument(field, f"must be between {low} and {high}, got {value}")
    return value


def check_duration(field: str, msg: Duration, *, maximum: timedelta) -> timedelta:
    """A Duration between 0 and `maximum`; the one reader of every Duration a request carries.

    Refuses what protobuf would accept or fail on: nanos out of range, seconds and nanos of
    opposite signs (not a normalised Duration), and seconds beyond what a timedelta holds
    (`ToTimedelta` raises OverflowError on those).
    """
    seconds, nanos = msg.seconds, msg.nanos
    if not -NANOS_PER_SECOND < nanos < NANOS_PER_SECOND:
        raise InvalidArgument(field, f"nanos must be between -999999999 and 999999999, got {nanos}")
    if (seconds > 0 > nanos) or (seconds < 0 < nanos):
        raise InvalidArgument(field, "seconds and nanos must have the same sign")
    if seconds < 0 or nanos < 0:
        raise InvalidArgument(field, "must be a non-negative duration")
    # Seconds first, so a huge value never reaches ToTimedelta.
    value = msg.ToTimedelta() if seconds <= maximum // timedelta(seconds=1) else None
    if value is None or value > maximum:
        raise InvalidArgument(field, f"must be at most {maximum.total_seconds():g}s")
    return value


def duration_or(field: str, msg: Duration, has: bool, default: timedelta, maximum: timedelta) -> timedelta:
    """A Duration field, or the default when unset; must be >= 0 and at most `maximum`."""
    if not has:
        return default
    return check_duration(field, msg, maximum=maximum)


def timestamp_or_now(field: str, msg: Timestamp, has: bool) -> datetime:
    """A Timestamp field, or now when unset."""
    if not has:
        return datetime.now(UTC)
    try:
        return msg.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidArgument(field, "is not a valid timestamp") from None


def nul_field(msg: Message, prefix: str = "") -> str | None:
    """The path of the first string field holding a NUL character, at any depth, else None.

    Every string of a request is checked here, once, before any servicer sees it: Postgres text
    cannot hold a NUL (SQLite can), so both backends must be spared it alike.
    """
    for field, value in msg.ListFields():
        path = prefix + field.name
        if field.type == FieldDescriptor.TYPE_STRING:
            values = enumerate(value) if field.is_repeated else [(None, value)]
            for i, text in values:
                if "\x00" in text:
                    return path if i is None else f"{path}[{i}]"
        elif (message_type := field.message_type) is not None:
            if message_type.GetOptions().map_entry:
                found = _nul_in_map(path, message_type.fields_by_name["value"], value)
            elif field.is_repeated:
                found = next((f for i, m in enumerate(value) if (f := nul_field(m, f"{path}[{i}]."))), None)
            else:
                found = nul_field(value, f"{path}.")
            if found is not None:
                return found
    return None


def _nul_in_map(path: str, value_field: FieldDescriptor, entries: Mapping[Any, Any]) -> str | None:
    # No request has a map yet; one that does is walked too, its entries named by the map.
    value_is_message = value_field.type == FieldDescriptor.TYPE_MESSAGE
    for key, value in entries.items():
        if isinstance(key, str) and "\x00" in key:
            return path
        if value_is_message:
            if (found := nul_field(value, f"{path}.")) is not None:
                return found
        elif isinstance(value, str) and "\x00" in value:
            return path
    return None
