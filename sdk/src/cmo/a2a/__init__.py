"""Agent-to-agent messaging: envelopes, their schemas, signatures and topics (spec: docs/a2a.md).

```python
envelope = Envelope.build(
    SpecialistInvocationRequest(task="heal", inputs={...}, budget=Budget(5, 0.5), deadline="2026-12-01T10:05:00Z"),
    sender=AgentId("orchestrator", "triage", "1.0"),
    to=AgentId("specialist", "healer", "1.0"),
    tenant="acme",
    project="web",
    reply_to=str(Topic.replies("acme", "web", "triage")),
)
signed = keys.sign(envelope)          # HmacKeys({"k1": secret}, current="k1")
wire = signed.to_bytes()              # canonical JSON
received = Envelope.parse(wire)       # schema-checked, its message id recomputed
keys.verify(received)
```

Submodules: `cmo.a2a.transports` (the `Transport` interface; memory, `.redis`, `.nats`),
`cmo.a2a.pipeline` (`Outbound`, `Inbound`: the send and receive pipelines), `cmo.a2a.agents`
(`Specialist`, `route`, `DecisionNoticePublisher`), `cmo.a2a.tokens` (JWTs, scopes, capability
tokens; `cmo-sdk[jwt]`), `cmo.a2a.replay` (the timestamp window and seen-set).
"""

from cmo.a2a._envelope import A2A_VERSION, MAX_ENVELOPE_BYTES, Envelope, Meta, message_id
from cmo.a2a._payloads import (
    PAYLOAD_TYPES,
    AgentId,
    Budget,
    ContextItem,
    ContextRequest,
    ContextResult,
    Cost,
    DeadLetter,
    DecisionNotice,
    ErrorInfo,
    Heartbeat,
    Issue,
    MemoryEvent,
    NextAction,
    Payload,
    RetryDirective,
    ScoringSummary,
    SpecialistInvocationRequest,
    SpecialistResult,
    TaskRequest,
    TaskResult,
)
from cmo.a2a._schemas import MESSAGE_TYPES, check_envelope, schema
from cmo.a2a._signing import SIGNATURE_ALG, HmacKeys
from cmo.a2a.errors import EnvelopeError, RejectedEnvelope
from cmo.a2a.topics import DEFAULT_PREFIX, Topic, check_pattern, matches

__all__ = [
    "A2A_VERSION",
    "DEFAULT_PREFIX",
    "MAX_ENVELOPE_BYTES",
    "MESSAGE_TYPES",
    "PAYLOAD_TYPES",
    "SIGNATURE_ALG",
    "AgentId",
    "Budget",
    "ContextItem",
    "ContextRequest",
    "ContextResult",
    "Cost",
    "DeadLetter",
    "DecisionNotice",
    "Envelope",
    "EnvelopeError",
    "ErrorInfo",
    "Heartbeat",
    "HmacKeys",
    "Issue",
    "MemoryEvent",
    "Meta",
    "NextAction",
    "Payload",
    "RejectedEnvelope",
    "RetryDirective",
    "ScoringSummary",
    "SpecialistInvocationRequest",
    "SpecialistResult",
    "TaskRequest",
    "TaskResult",
    "Topic",
    "check_envelope",
    "check_pattern",
    "matches",
    "message_id",
    "schema",
]
