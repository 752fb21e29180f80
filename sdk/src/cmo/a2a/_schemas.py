"""The envelope's and the payloads' JSON Schemas (package data), compiled once with fastjsonschema.

fastjsonschema ignores a format it does not know, and its own `date-time` accepts what RFC 3339
does not; both formats an envelope uses are registered here, strictly.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from datetime import datetime
from importlib import resources
from typing import Any

import fastjsonschema

from cmo.a2a.errors import EnvelopeError

__all__ = ["MESSAGE_TYPES", "check_envelope", "check_payload", "parse_rfc3339", "schema"]

MESSAGE_TYPES = (
    "TaskRequest",
    "TaskResult",
    "MemoryEvent",
    "ContextRequest",
    "ContextResult",
    "SpecialistInvocationRequest",
    "SpecialistResult",
    "RetryDirective",
    "DecisionNotice",
    "Heartbeat",
    "DeadLetter",
)

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})", re.ASCII)
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", re.ASCII)


def parse_rfc3339(value: str) -> datetime | None:
    """An RFC 3339 date-time as an aware datetime (to the microsecond), or None if it is not one."""
    found = _RFC3339.fullmatch(value)
    if found is None:
        return None
    fraction, offset = found.group(1) or "", found.group(2)
    # Python reads microseconds at most; an offset of Z is +00:00.
    text = value[:10] + "T" + value[11:19] + fraction[:7] + ("+00:00" if offset in "Zz" else offset)
    try:
        return datetime.fromisoformat(text)
    except ValueError:  # no 30 February, no hour 24
        return None


def _date_time(value: str) -> bool:
    return parse_rfc3339(value) is not None


def _uuid(value: str) -> bool:
    return _UUID.fullmatch(value) is not None


FORMATS: dict[str, Callable[[str], bool]] = {"date-time": _date_time, "uuid": _uuid}


def schema(name: str) -> dict[str, Any]:
    """A schema as shipped: "envelope" or a message type."""
    folder = resources.files("cmo.a2a") / "schemas"
    path = folder / "envelope.schema.json" if name == "envelope" else folder / "payloads" / f"{name}.schema.json"
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


@functools.cache
def _validator(name: str) -> Callable[[Any], Any]:
    validate: Callable[[Any], Any] = fastjsonschema.compile(schema(name), formats=FORMATS)
    return validate


def check_envelope(document: Any) -> None:
    """Raise EnvelopeError unless `document` is an envelope whose payload fits its type's schema."""
    _check("envelope", document, "$")
    _check(document["meta"]["type"], document["payload"], "$.payload")


def check_payload(message_type: str, payload: Any) -> None:
    """Raise EnvelopeError unless `payload` fits the schema of `message_type`."""
    if message_type not in MESSAGE_TYPES:
        raise EnvelopeError("$.meta.type", "enum", f"must be one of {', '.join(MESSAGE_TYPES)}")
    _check(message_type, payload, "$.payload")


def _check(name: str, document: Any, root: str) -> None:
    try:
        _validator(name)(document)
    except fastjsonschema.JsonSchemaValueException as err:
        raise EnvelopeError(_path(root, err.name), err.rule or "schema", _rule_text(err)) from None


def _path(root: str, name: str | None) -> str:
    """The JSON path under `root` (`$.meta.to[0]`) of the value fastjsonschema names `data.meta.to[0]`."""
    name = name or "data"
    return root + name[len("data") :] if name.startswith("data") else root


def _rule_text(err: fastjsonschema.JsonSchemaValueException) -> str:
    """What the rule asks, without fastjsonschema's own naming of the value ("data.meta.ts must …")."""
    message = err.message
    name = err.name or "data"
    return message[len(name) :].strip() if message.startswith(name) else message
