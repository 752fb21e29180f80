"""The A2A wire gates: a `cmo.a2a` pipeline asks the policies about each envelope it sends or receives.

```python
gate = WireGatePolicy(PolicyBundle.load("policies"), tokens=verifier)
inbound = Inbound(me=..., tenant="acme", project="web", gate=gate)
outbound = Outbound(transport, keys=keys, gate=gate)
```

A refusal is `denied_by_policy`, which the receiving pipeline dead-letters with the policy, rule
and reason (never dropped in silence).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from cmo.a2a.errors import RejectedEnvelope
from cmo.policy._bundle import Decision, PolicyBundle

if TYPE_CHECKING:
    from cmo.a2a._envelope import Envelope
    from cmo.a2a.tokens import TokenVerifier

__all__ = ["WireGatePolicy", "wire_input"]

logger = logging.getLogger("cmo.policy.decisions")

_SECRET_META = ("jwt_token", "capability_token", "signature")


def wire_input(
    envelope: Envelope, topic: str, direction: str, *, tokens: TokenVerifier | None = None
) -> dict[str, Any]:
    """What the `a2a_send` / `a2a_receive` gates see (docs/policy.md).

    The envelope's meta without its secrets, its payload, its size, the topic and its namespace,
    and the claims of its tokens (those a verifier accepts; none otherwise).
    """
    document = envelope.to_json()
    meta = {k: v for k, v in document["meta"].items() if k not in _SECRET_META}
    parts = topic.split(".")
    sender: dict[str, Any] = {"roles": [], "capabilities": []}
    if tokens is not None:
        if envelope.meta.jwt_token:
            sender["roles"] = _strings(_claims(tokens, envelope.meta.jwt_token, None).get("roles"))
        if envelope.meta.capability_token:
            receiver = envelope.meta.to[0].id if envelope.meta.to else None
            held = _claims(tokens, envelope.meta.capability_token, receiver).get("capabilities")
            sender["capabilities"] = _strings(held)
    return {
        "direction": direction,
        "topic": {
            "name": topic,
            "tenant": parts[1] if len(parts) > 2 else "",
            "project": parts[2] if len(parts) > 2 else "",
        },
        "meta": meta,
        "payload": document["payload"],
        "size": len(envelope.to_bytes()),
        "sender": sender,
    }


def _claims(tokens: TokenVerifier, token: str, audience: str | None) -> dict[str, Any]:
    try:
        return tokens.verify(token, audience=audience)
    except RejectedEnvelope:
        return {}


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


class WireGatePolicy:
    """A `cmo.a2a.pipeline.WireGate` that asks `a2a_send` or `a2a_receive`; raises `denied_by_policy`."""

    def __init__(self, bundle: PolicyBundle, *, tokens: TokenVerifier | None = None) -> None:
        self.bundle = bundle
        self._tokens = tokens

    async def __call__(self, envelope: Envelope, topic: str, direction: str) -> None:
        gate = "a2a_send" if direction == "send" else "a2a_receive"
        decision = self.bundle.decide(gate, wire_input(envelope, topic, direction, tokens=self._tokens))
        _log(decision, envelope, topic)
        if (denial := decision.denial) is not None:
            raise RejectedEnvelope(
                "denied_by_policy", f"policy {denial.policy}, rule {denial.rule}: {denial.reason}"[:1000]
            )


def _log(decision: Decision, envelope: Envelope, topic: str) -> None:
    denial = decision.denial
    logger.log(
        logging.INFO if denial is None else logging.WARNING,
        "%s %s %s on %s",
        decision.gate,
        "allowed" if denial is None else f"denied by {denial.policy}.{denial.rule}: {denial.reason}",
        envelope.meta.message_id[:16],
        topic[:128],
        extra={
            "gate": decision.gate,
            "allowed": denial is None,
            "policy": denial.policy if denial else "",
            "rule": denial.rule if denial else "",
            "reason": denial.reason if denial else "",
            "bundle": decision.bundle_hash,
            "message_id": envelope.meta.message_id,
            "message_type": envelope.meta.type,
        },
    )
