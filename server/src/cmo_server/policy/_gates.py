"""The gates the engine and the registry ask, and the inputs the policies see (docs/policy.md)."""

from __future__ import annotations

import json
from typing import Any

from cmo.policy import Decision, PolicyBundle
from cmo_server.auth import CALLER, Principal
from cmo_server.domain import Namespace
from cmo_server.engine import GateDenial, StepView
from cmo_server.policy._decisions import DecisionLog
from cmo_server.registry import Registration

__all__ = ["PolicyGates"]


class PolicyGates:
    """A `StepGate` for the engine and a registration gate for the registry, over one (swappable) bundle."""

    def __init__(self, bundle: PolicyBundle, decisions: DecisionLog) -> None:
        self.bundle = bundle
        """The bundle in force; a reload replaces it (each decision reads it once)."""
        self.decisions = decisions
        # A step's state is decoded once for its `step_after` and the next step's `step_before`.
        self._last_state: tuple[bytes, Any, list[str]] = (b"", {}, [])

    def before_step(self, step: StepView) -> GateDenial | None:
        bundle = self.bundle
        document = self._step_input(bundle, step)
        return self._decided(bundle.decide("step_before", document), _about_step(step))

    def after_step(self, step: StepView, *, output: bytes, next_node: str) -> GateDenial | None:
        bundle = self.bundle
        document = self._step_input(bundle, step)
        document["next_node"] = next_node
        document["output_bytes"] = len(output)
        if bundle.reads("output") or bundle.reads("output_keys"):
            value = json.loads(output) if output else None
            document["output"] = value
            document["output_keys"] = sorted(value) if isinstance(value, dict) else []
        return self._decided(bundle.decide("step_after", document), _about_step(step))

    def registration(self, agent: Registration) -> GateDenial | None:
        principal = _principal()
        document = {
            "namespace": _namespace(agent.namespace),
            "agent": {
                "id": agent.agent_id,
                "kind": agent.kind,
                "name": agent.name,
                "version": agent.version,
                "capabilities": list(agent.capabilities),
                "topics": [{"name": t.topic, "role": t.role.name.lower()} for t in agent.topics],
                "metadata": dict(agent.metadata),
                "lease_seconds": agent.lease.total_seconds(),
            },
            "principal": principal,
        }
        about = {"namespace": str(agent.namespace), "agent_id": agent.agent_id, "subject": principal["subject"]}
        return self._decided(self.bundle.decide("registration", document), about)

    def _step_input(self, bundle: PolicyBundle, step: StepView) -> dict[str, Any]:
        document: dict[str, Any] = {
            "namespace": _namespace(step.namespace),
            "run": {"id": step.run_id},
            "graph": {"id": step.graph_id, "version": step.graph_version},
            "node": {"id": step.node_id, "queue": step.task_queue},
            "step": {"index": step.step_index, "attempt": step.attempt},
            "principal": _principal(),
            "state_bytes": len(step.state),
        }
        # Decoded only for policies that read it: the interpreter's cost grows with its input.
        if bundle.reads("state") or bundle.reads("state_keys"):
            last, state, keys = self._last_state
            if step.state != last:
                state = json.loads(step.state) if step.state else {}
                keys = sorted(state) if isinstance(state, dict) else []
                self._last_state = (step.state, state, keys)
            document["state"] = state
            document["state_keys"] = keys
        return document

    def _decided(self, decision: Decision, about: dict[str, Any]) -> GateDenial | None:
        self.decisions.record(decision, about)
        denial = decision.denial
        if denial is None:
            return None
        return GateDenial(decision.gate, denial.policy, denial.rule, denial.reason, decision.bundle_hash)


def _principal() -> dict[str, Any]:
    """The caller as the policies see it (the same object for the same caller: policies only read it)."""
    caller = CALLER.get()
    if caller is None:
        return _ANONYMOUS
    seen = _PRINCIPALS.get(caller)
    if seen is None:
        if len(_PRINCIPALS) >= 1024:
            _PRINCIPALS.clear()
        seen = _PRINCIPALS[caller] = {
            "authenticated": True,
            "subject": caller.subject,
            "scopes": list(caller.scopes),
            "roles": list(caller.roles),
            "namespaces": list(caller.namespaces),
        }
    return seen


_ANONYMOUS: dict[str, Any] = {"authenticated": False, "subject": "", "scopes": [], "roles": [], "namespaces": []}
_PRINCIPALS: dict[Principal, dict[str, Any]] = {}


def _namespace(namespace: Namespace) -> dict[str, str]:
    return {"tenant": namespace.tenant, "project": namespace.project}


def _about_step(step: StepView) -> dict[str, Any]:
    caller = CALLER.get()
    return {
        "namespace": str(step.namespace),
        "run_id": step.run_id,
        "step_index": step.step_index,
        "attempt": step.attempt,
        "node_id": step.node_id,
        "subject": caller.subject if caller is not None else "",
    }
