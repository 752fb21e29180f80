"""Replaying a run's path through its registered graph.

Each step where the graph says it goes, each checkpoint the state its hash names, the run ended
exactly when its last step said so. A run's steps replay against its graph version when, step by step:

- the steps are numbered 0, 1, 2, ... without a gap;
- step 0 ran the graph's entry node, and each later step the node its predecessor led to;
- the edge a step took (`next_key`) is one the graph has from its node, to the node it recorded;
- its state hashes to the `state_hash` it was checkpointed with (nothing rewrote it since);
- its activities are numbered 0, 1, 2, ... (none lost, none recorded twice);
- only the last step of a completed run leads to the end, and a completed run's last step does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cmo.serialization import state_hash
from cmo_server.domain import END_NODE, GraphSpec, Run, RunStatus, Step

__all__ = ["CHECKS", "Divergence", "Verification", "verify_history"]

CHECKS = ("numbering", "path", "edges", "state_hashes", "activities", "ending")
"""What `verify_history` checks, by name (a divergence names the one that failed)."""


@dataclass(frozen=True, slots=True)
class Divergence:
    """The first step where the history and the graph disagree."""

    step_index: int
    check: str
    """One of CHECKS."""
    message: str


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of replaying a run's history against its graph version."""

    graph_id: str
    graph_version: int
    steps: int
    """Steps checked (all of them when the history replays; up to the divergence otherwise)."""
    divergence: Divergence | None

    @property
    def ok(self) -> bool:
        return self.divergence is None


def verify_history(graph: GraphSpec, run: Run, steps: Sequence[Step]) -> Verification:
    """Replay `steps` (the whole history of `run`, in order) through `graph`."""

    def diverged(step: Step, check: str, message: str) -> Verification:
        return Verification(graph.graph_id, graph.version, step.step_index, Divergence(step.step_index, check, message))

    expected_node = graph.entry_node
    for i, step in enumerate(steps):
        if step.step_index != i:
            return diverged(step, "numbering", f"step {step.step_index} comes where step {i} should")
        if step.node_id != expected_node:
            after = "the graph's entry node" if i == 0 else f"step {i - 1}'s edge"
            return diverged(step, "path", f"ran node {step.node_id!r}, but {after} leads to {expected_node!r}")
        target = graph.next_node(step.node_id, step.next_key)
        if target is None:
            return diverged(step, "edges", f"took edge {step.next_key!r}, which node {step.node_id!r} does not have")
        if target != step.next_node:
            return diverged(
                step, "edges", f"recorded edge {step.next_key!r} to {step.next_node!r}; the graph leads to {target!r}"
            )
        if (found := state_hash(step.state)) != step.state_hash:
            return diverged(
                step, "state_hashes", f"its state hashes to {found[:12]}…, not the checkpoint's {step.state_hash[:12]}…"
            )
        numbers = [a.seq for a in step.activities]
        if numbers != list(range(len(numbers))):
            return diverged(step, "activities", f"its activities are numbered {numbers[:10]}, not 0, 1, 2, ...")
        last = i == len(steps) - 1
        if target == END_NODE and not last:
            return diverged(step, "ending", f"led to the end, yet step {i + 1} follows")
        expected_node = target
    if run.status is RunStatus.COMPLETED and (not steps or steps[-1].next_node != END_NODE):
        tail = steps[-1] if steps else None
        where = "it has no step" if tail is None else f"its last step leads to {tail.next_node!r}"
        index = tail.step_index if tail is not None else 0
        return Verification(
            graph.graph_id, graph.version, len(steps), Divergence(index, "ending", f"the run completed, but {where}")
        )
    return Verification(graph.graph_id, graph.version, len(steps), None)
