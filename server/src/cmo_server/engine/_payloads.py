"""Validation of the JSON payloads runs carry: states, inputs, outputs."""

from __future__ import annotations

from cmo.serialization import canonical_json, parse_json
from cmo_server.errors import InvalidArgument, ResourceExhausted

__all__ = ["canonical_payload"]


def canonical_payload(field: str, data: bytes, limit: int, *, object_only: bool = False) -> bytes:
    """Check a payload is JSON within the size limit and return its canonical bytes.

    Raises:
        ResourceExhausted: the payload is larger than `limit` bytes.
        InvalidArgument: it is not JSON (or not an object where one is required).
    """
    if len(data) > limit:
        raise ResourceExhausted(f"{field}: {len(data)} bytes is over the limit of {limit} bytes")
    try:
        value = parse_json(data)
    except (ValueError, RecursionError) as err:
        raise InvalidArgument(field, f"is not valid UTF-8 JSON ({_short(err)})") from None
    if object_only and not isinstance(value, dict):
        raise InvalidArgument(field, f"must be a JSON object, got {type(value).__name__}")
    try:
        canonical = canonical_json(value)
    except (ValueError, RecursionError) as err:
        # It parsed but has no canonical form: a lone surrogate escape ("\\ud800"), or a number
        # too large for a float (1e400 parses as infinity).
        raise InvalidArgument(field, f"is not valid JSON ({_short(err)})") from None
    if len(canonical) > limit:
        raise ResourceExhausted(f"{field}: {len(canonical)} bytes is over the limit of {limit} bytes")
    return canonical


def _short(err: Exception) -> str:
    text = str(err)
    return text if len(text) <= 120 else text[:117] + "..."
