"""What can go wrong with an envelope, each with a reason a dead letter and a counter can carry."""

from __future__ import annotations

__all__ = ["EnvelopeError", "RejectedEnvelope"]


class RejectedEnvelope(Exception):
    """An envelope that must not reach a handler. `reason` is a stable code (`bad_signature`, …)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class EnvelopeError(RejectedEnvelope):
    """An envelope that does not fit the spec: `path` is where (`$.meta.ts`), `rule` which rule broke."""

    def __init__(self, path: str, rule: str, message: str) -> None:
        super().__init__("invalid_envelope", f"{path}: {message} ({rule})")
        self.path = path
        self.rule = rule
        self.message = message
