"""Canonical JSON: the one byte form of states and outputs that is stored and hashed.

Sorted keys, no insignificant white space, UTF-8, no NaN or infinity: the same value always gives
the same bytes, so a state hash is stable across processes, machines and languages.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["canonical_json", "parse_json", "state_hash"]

_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_json(value: Any) -> bytes:
    """Encode a JSON-shaped value canonically.

    Raises:
        TypeError: a value is not JSON-shaped.
        ValueError: a float is NaN or infinite.
    """
    return _ENCODER.encode(value).encode()


def parse_json(data: bytes) -> Any:
    """Decode JSON bytes, refusing NaN and infinity as canonical JSON does.

    Raises:
        ValueError: the bytes are not valid UTF-8 JSON.
    """
    return json.loads(data, parse_constant=_refuse_constant)


def state_hash(canonical: bytes) -> str:
    """SHA-256, hex, of canonical JSON bytes."""
    return hashlib.sha256(canonical).hexdigest()


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")
