"""The envelope: meta + payload, its canonical bytes and its message id (docs/a2a.md)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from cmo.a2a._payloads import PAYLOAD_TYPES, AgentId, Payload
from cmo.a2a._schemas import check_envelope
from cmo.a2a.errors import EnvelopeError
from cmo.serialization import canonical_json, parse_json

__all__ = ["A2A_VERSION", "MAX_ENVELOPE_BYTES", "Envelope", "Meta", "message_id"]

A2A_VERSION = "1.0"
MAX_ENVELOPE_BYTES = 4 * 1024 * 1024
"""Largest envelope parsed; larger ones are refused before they are read as JSON."""

P = TypeVar("P", bound=Payload)

# Meta's optional members, in the order the spec lists them (JSON keys; `from` is `sender` here).
_OPTIONAL = ("priority", "correlation_id", "reply_to", "idempotency_key", "jwt_token", "capability_token")


@dataclass(frozen=True, slots=True)
class Meta:
    """An envelope's meta. `sender` is the JSON member `from`."""

    a2a_version: str
    message_id: str
    trace_id: str
    ts: str
    sender: AgentId
    to: tuple[AgentId, ...]
    tenant: str
    project: str
    type: str
    priority: str | None = None
    correlation_id: str | None = None
    reply_to: str | None = None
    idempotency_key: str | None = None
    jwt_token: str | None = None
    capability_token: str | None = None
    signature: dict[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "a2a_version": self.a2a_version,
            "message_id": self.message_id,
            "trace_id": self.trace_id,
            "ts": self.ts,
            "from": _agent_json(self.sender),
            "to": [_agent_json(a) for a in self.to],
            "tenant": self.tenant,
            "project": self.project,
            "type": self.type,
        }
        for name in _OPTIONAL:
            if (value := getattr(self, name)) is not None:
                data[name] = value
        if self.signature is not None:
            data["signature"] = dict(self.signature)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Meta:
        return cls(
            a2a_version=data["a2a_version"],
            message_id=data["message_id"],
            trace_id=data["trace_id"],
            ts=data["ts"],
            sender=AgentId(**data["from"]),
            to=tuple(AgentId(**a) for a in data["to"]),
            tenant=data["tenant"],
            project=data["project"],
            type=data["type"],
            signature=dict(data["signature"]) if "signature" in data else None,
            **{name: data[name] for name in _OPTIONAL if name in data},
        )


@dataclass(frozen=True, slots=True)
class Envelope:
    """A validated A2A message. Build one with `Envelope.build`, read one with `Envelope.parse`."""

    meta: Meta
    payload: dict[str, Any]

    @classmethod
    def build(
        cls,
        payload: Payload,
        *,
        sender: AgentId,
        to: AgentId | tuple[AgentId, ...] | list[AgentId],
        tenant: str,
        project: str,
        trace_id: str | None = None,
        ts: datetime | None = None,
        priority: str | None = None,
        correlation_id: str | None = None,
        reply_to: str | None = None,
        idempotency_key: str | None = None,
        jwt_token: str | None = None,
        capability_token: str | None = None,
    ) -> Envelope:
        """A new envelope of `payload`, its message id computed, checked against the schemas.

        `ts` defaults to now and `trace_id` to a random one; give both (as a graph step does, from
        its logical time and its run) for an envelope whose message id is the same every time.
        """
        recipients = (to,) if isinstance(to, AgentId) else tuple(to)
        meta = Meta(
            a2a_version=A2A_VERSION,
            message_id="",
            trace_id=trace_id or secrets.token_hex(16),
            ts=_rfc3339(ts or datetime.now(UTC)),
            sender=sender,
            to=recipients,
            tenant=tenant,
            project=project,
            type=payload.message_type,
            priority=priority,
            correlation_id=correlation_id,
            reply_to=reply_to,
            idempotency_key=idempotency_key,
            jwt_token=jwt_token,
            capability_token=capability_token,
        )
        unnamed = cls(meta, payload.to_json())
        envelope = replace(unnamed, meta=replace(meta, message_id=message_id(unnamed.to_json())))
        check_envelope(envelope.to_json())
        return envelope

    @classmethod
    def parse(cls, data: bytes | str | dict[str, Any]) -> Envelope:
        """An envelope read from JSON: checked against the schemas, its message id recomputed.

        Raises:
            EnvelopeError: the JSON, a schema rule or the message id is wrong; it names where.
        """
        document = _document(data)
        check_envelope(document)
        expected = message_id(document)
        if document["meta"]["message_id"] != expected:
            raise EnvelopeError("$.meta.message_id", "message_id", f"is not the envelope's id ({expected})")
        return cls(Meta.from_json(document["meta"]), document["payload"])

    def to_json(self) -> dict[str, Any]:
        """The envelope as JSON-shaped data."""
        return {"meta": self.meta.to_json(), "payload": self.payload}

    def to_bytes(self) -> bytes:
        """The canonical JSON of the envelope: what goes on the wire."""
        return canonical_json(self.to_json())

    def payload_as(self, model: type[P]) -> P:
        """The payload as its typed model; TypeError if the envelope is of another type."""
        if model.message_type != self.meta.type:
            raise TypeError(f"the envelope is a {self.meta.type}, not a {model.message_type}")
        return model.from_json(self.payload)

    def typed_payload(self) -> Payload:
        """The payload as the model of its type."""
        return PAYLOAD_TYPES[self.meta.type].from_json(self.payload)

    def with_signature(self, signature: dict[str, str] | None) -> Envelope:
        """This envelope with `meta.signature` set (or removed): the message id does not change."""
        return replace(self, meta=replace(self.meta, signature=signature))


def message_id(document: dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of the envelope without `message_id` and `signature`."""
    meta = {k: v for k, v in document["meta"].items() if k not in ("message_id", "signature")}
    return hashlib.sha256(canonical_json({"meta": meta, "payload": document["payload"]})).hexdigest()


def _document(data: bytes | str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(data, dict):
        return data
    if len(data) > MAX_ENVELOPE_BYTES:
        raise EnvelopeError("$", "size", f"{len(data)} bytes is over the limit of {MAX_ENVELOPE_BYTES}")
    try:
        document = parse_json(data.encode() if isinstance(data, str) else data)
    except ValueError as err:  # UnicodeDecodeError is one
        raise EnvelopeError("$", "json", f"is not JSON: {err}") from None
    if not isinstance(document, dict):
        raise EnvelopeError("$", "type", "must be object")
    return document


def _agent_json(agent: AgentId) -> dict[str, str]:
    return {"type": agent.type, "id": agent.id, "version": agent.version}


def _rfc3339(moment: datetime) -> str:
    """UTC, milliseconds, Z: `2026-12-01T10:00:00.000Z`."""
    if moment.tzinfo is None:
        raise ValueError("ts must be an aware datetime")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
