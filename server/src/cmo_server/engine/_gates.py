"""What the engine asks before it dispatches a step and before it checkpoints one: the StepGate.

The engine knows nothing of how a gate decides (cmo_server/policy/ asks Rego policies); it only
turns a denial into a failure of the step that no retry can undo.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Protocol

from cmo_server.domain import Failure, Namespace

__all__ = ["DENIED_TYPE", "GateDenial", "StepGate", "StepView"]

DENIED_TYPE = "PolicyDenied"
"""The failure type of a step a gate refused."""


@dataclass(frozen=True, slots=True)
class StepView:
    """The step a gate is asked about."""

    namespace: Namespace
    run_id: str
    graph_id: str
    graph_version: int
    node_id: str
    task_queue: str
    step_index: int
    attempt: int
    state: bytes
    """The state the step starts from (before) or ends with (after), canonical JSON."""


@dataclass(frozen=True, slots=True)
class GateDenial:
    """A gate's refusal: which gate, which policy and rule, why, and the bundle that said so."""

    gate: str
    policy: str
    rule: str
    reason: str
    bundle: str

    def failure(self) -> Failure:
        return Failure(
            message=f"denied by policy {self.policy}, rule {self.rule}: {self.reason}"[:4000],
            type=DENIED_TYPE,
            non_retryable=True,
            details=json.dumps(
                {
                    "gate": self.gate,
                    "policy": self.policy,
                    "rule": self.rule,
                    "reason": self.reason,
                    "bundle": self.bundle,
                },
                separators=(",", ":"),
            ),
        )


class StepGate(Protocol):
    """Decides whether a step may be dispatched and whether what it produced may be kept."""

    def before_step(self, step: StepView) -> GateDenial | None:
        """None to dispatch the step to the worker that polled; a denial fails it."""
        ...

    def after_step(self, step: StepView, *, output: bytes, next_node: str) -> GateDenial | None:
        """None to checkpoint the step (`step.state` is its new state); a denial fails it instead."""
        ...
