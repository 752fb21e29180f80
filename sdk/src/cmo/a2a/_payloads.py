"""Typed models of the eleven payloads; `Envelope.payload_as(SpecialistResult)` returns one.

Field names and meanings are the JSON Schemas' (schemas/payloads/); an optional field left None is
left out of the JSON.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from cmo._converter import from_json, to_json

__all__ = [
    "PAYLOAD_TYPES",
    "AgentId",
    "Budget",
    "ContextItem",
    "ContextRequest",
    "ContextResult",
    "Cost",
    "DeadLetter",
    "DecisionNotice",
    "ErrorInfo",
    "Heartbeat",
    "Issue",
    "MemoryEvent",
    "NextAction",
    "Payload",
    "RetryDirective",
    "ScoringSummary",
    "SpecialistInvocationRequest",
    "SpecialistResult",
    "TaskRequest",
    "TaskResult",
]

P = TypeVar("P", bound="Payload")


@dataclass(frozen=True, slots=True)
class AgentId:
    """Who sends or receives: `type` (specialist, orchestrator, worker …), `id`, `version`."""

    type: str
    id: str
    version: str


class Payload:
    """Base of the payload models: `message_type` names the envelope type it is the payload of."""

    message_type: ClassVar[str]

    def to_json(self) -> dict[str, Any]:
        """The payload as JSON-shaped data, optional fields left out when None."""
        data = _without_none(to_json(self))
        assert isinstance(data, dict)
        return data

    @classmethod
    def from_json(cls: type[P], data: dict[str, Any]) -> P:
        """The model of a (validated) payload."""
        return from_json(data, cls)


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class TaskRequest(Payload):
    message_type: ClassVar[str] = "TaskRequest"
    task: str
    inputs: dict[str, Any]
    deadline: str | None = None


@dataclass(frozen=True, slots=True)
class TaskResult(Payload):
    message_type: ClassVar[str] = "TaskResult"
    status: str
    output: Any = None
    error: ErrorInfo | None = None


@dataclass(frozen=True, slots=True)
class MemoryEvent(Payload):
    message_type: ClassVar[str] = "MemoryEvent"
    op: str
    key: str
    value: Any = None
    scope: str | None = None


@dataclass(frozen=True, slots=True)
class ContextRequest(Payload):
    message_type: ClassVar[str] = "ContextRequest"
    query: str
    keys: list[str] | None = None
    max_items: int | None = None


@dataclass(frozen=True, slots=True)
class ContextItem:
    key: str
    value: Any


@dataclass(frozen=True, slots=True)
class ContextResult(Payload):
    message_type: ClassVar[str] = "ContextResult"
    items: list[ContextItem]
    truncated: bool | None = None


@dataclass(frozen=True, slots=True)
class Budget:
    max_minutes: float
    max_cost_usd: float


@dataclass(frozen=True, slots=True)
class SpecialistInvocationRequest(Payload):
    message_type: ClassVar[str] = "SpecialistInvocationRequest"
    task: str
    inputs: dict[str, Any]
    budget: Budget
    deadline: str


@dataclass(frozen=True, slots=True)
class Cost:
    usd: float
    minutes: float | None = None


@dataclass(frozen=True, slots=True)
class SpecialistResult(Payload):
    message_type: ClassVar[str] = "SpecialistResult"
    status: str
    confidence: float
    cost: Cost
    errors: list[ErrorInfo] = field(default_factory=list)
    proposal: Any = None


@dataclass(frozen=True, slots=True)
class RetryDirective(Payload):
    message_type: ClassVar[str] = "RetryDirective"
    target_message_id: str
    reason: str
    retry_after_ms: int
    max_attempts: int | None = None


@dataclass(frozen=True, slots=True)
class ScoringSummary:
    confidence: float
    feasibility: float
    total_score: float


@dataclass(frozen=True, slots=True)
class NextAction:
    action: str
    assigned_to: AgentId
    deadline: str


@dataclass(frozen=True, slots=True)
class Issue:
    code: str
    message: str
    severity: str


@dataclass(frozen=True, slots=True)
class DecisionNotice(Payload):
    message_type: ClassVar[str] = "DecisionNotice"
    decision: str
    rationale: str
    scoring_summary: ScoringSummary
    next_actions: list[NextAction] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Heartbeat(Payload):
    message_type: ClassVar[str] = "Heartbeat"
    status: str
    load: float | None = None
    capabilities: list[str] | None = None
    lease_seconds: int | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter(Payload):
    message_type: ClassVar[str] = "DeadLetter"
    reason: str
    detail: str
    original_topic: str
    original: str
    original_message_id: str | None = None
    deliveries: int | None = None


PAYLOAD_TYPES: dict[str, type[Payload]] = {
    cls.message_type: cls
    for cls in (
        TaskRequest,
        TaskResult,
        MemoryEvent,
        ContextRequest,
        ContextResult,
        SpecialistInvocationRequest,
        SpecialistResult,
        RetryDirective,
        DecisionNotice,
        Heartbeat,
        DeadLetter,
    )
}
assert all(dataclasses.is_dataclass(cls) for cls in PAYLOAD_TYPES.values())
