"""Replay: run a graph's node code again against a recorded history and compare, step by step."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cmo._activity import ActivityRunner
from cmo._convert import activity_to_proto
from cmo._converter import from_json, to_json
from cmo._graph import Graph, NodeContext
from cmo._history import RunHistory
from cmo.errors import CmoError, NondeterminismError
from cmo.serialization import canonical_json, state_hash

if TYPE_CHECKING:
    from cmo._client import Client

__all__ = ["ReplayDivergenceError", "ReplayReport", "Replayer", "StepVerdict"]


@dataclass(frozen=True, slots=True)
class StepVerdict:
    """How one step's replay compared with its record."""

    step_index: int
    node_id: str
    recorded_hash: str
    replayed_hash: str
    """Empty when the step could not be replayed."""
    problem: str
    """Empty when the step matched: same activities, same state hash, same next key."""
    replayed_state: Any = None
    """The state the code produced (JSON-shaped), to compare with the record's; None when it could not be replayed."""

    @property
    def ok(self) -> bool:
        """The replay matched the record."""
        return not self.problem


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """The verdicts of a replay, one per replayed step."""

    run_id: str
    steps: tuple[StepVerdict, ...]

    @property
    def ok(self) -> bool:
        """Every replayed step matched."""
        return all(s.ok for s in self.steps)

    def raise_for_divergence(self) -> None:
        """Raise `ReplayDivergenceError` naming the first step that did not match."""
        bad = next((s for s in self.steps if not s.ok), None)
        if bad is not None:
            raise ReplayDivergenceError(self.run_id, bad)


class ReplayDivergenceError(CmoError, AssertionError):
    """A replayed step did not match its record (an AssertionError, so pytest shows it plainly)."""

    def __init__(self, run_id: str, verdict: StepVerdict) -> None:
        super().__init__(f"run {run_id} diverges at step {verdict.step_index} ({verdict.node_id}): {verdict.problem}")
        self.verdict = verdict


class Replayer:
    """Re-executes recorded runs of some graphs offline: no server, no side effects.

    Each step runs its node code from the recorded state before it, with the step's logical time,
    seed and recorded activities; an activity the record does not have is a nondeterminism error.
    `ctx.artifacts.get` is recorded by digest, not content: replaying it reads the content from
    `client`'s server (read-only), and without a client the node gets an error saying so.

    Example:
        ```python
        def test_triage_is_deterministic():
            report = asyncio.run(Replayer([triage]).replay(RunHistory.load("tests/fixtures/triage.json")))
            report.raise_for_divergence()
        ```
    """

    def __init__(self, graphs: Sequence[Graph[Any]], *, client: Client | None = None) -> None:
        self._graphs = {(g.graph_id, g.version): g for g in graphs}
        self._client = client

    async def replay(self, history: RunHistory, *, to_step: int | None = None) -> ReplayReport:
        """Replay the steps of `history` (up to and including `to_step`)."""
        run = history.run
        graph = self._graphs.get((run.graph_id, run.graph_version))
        if graph is None:
            raise ValueError(f"no graph {run.graph_id}@{run.graph_version} given to the replayer")
        verdicts = []
        before: Any = run.input
        for step in history.steps:
            if to_step is not None and step.step_index > to_step:
                break
            verdicts.append(await self._replay_step(graph, history, step, before))
            before = step.state
        return ReplayReport(run.run_id, tuple(verdicts))

    async def _replay_step(self, graph: Graph[Any], history: RunHistory, step: Any, before: Any) -> StepVerdict:
        def verdict(replayed: str, problem: str, state: Any = None) -> StepVerdict:
            return StepVerdict(step.step_index, step.node_id, step.state_hash, replayed, problem, state)

        node = graph.nodes.get(step.node_id)
        if node is None:
            return verdict("", f"the graph has no node {step.node_id!r}")
        recorded = {a.seq: activity_to_proto(a) for a in step.activities}
        run = history.run
        runner = ActivityRunner(
            namespace=f"{run.tenant}/{run.project}",
            run_id=run.run_id,
            step_index=step.step_index,
            recorded=recorded,
            record=None,
        )
        ctx = NodeContext(
            tenant=run.tenant,
            project=run.project,
            run_id=history.run.run_id,
            step_index=step.step_index,
            attempt=step.attempt,
            node_id=step.node_id,
            graph_id=history.run.graph_id,
            graph_version=history.run.graph_version,
            logical_time=step.logical_time,
            seed=history.run.seed,
            activities=runner,
            worker_stub=self._client.worker_stub if self._client is not None else None,
        )
        try:
            result = await node.run(from_json(before, graph.state_type), ctx)
        except NondeterminismError as err:
            return verdict("", str(err))
        except Exception as err:
            return verdict("", f"the node raised {type(err).__name__}: {err}")
        state = to_json(result.state)
        replayed = state_hash(canonical_json(state))
        made = _calls_made(step)
        if runner.calls < made:
            return verdict(replayed, f"the code made {runner.calls} activity calls, the record has {made}", state)
        if result.next != step.next_key:
            return verdict(replayed, f"next key {result.next!r}, recorded {step.next_key!r}", state)
        if replayed != step.state_hash:
            return verdict(replayed, f"state hash {replayed[:12]}, recorded {step.state_hash[:12]}", state)
        return verdict(replayed, "", state)


def _calls_made(step: Any) -> int:
    """How many activity calls the attempt that completed `step` made, as far as its records tell.

    Its own records come from calls it made, and so do all records before them. Records of earlier
    attempts past its last own one may be of calls it no longer made: an activity that failed and
    ran again may have led the node down another path.
    """
    own = [a.seq for a in step.activities if a.attempt == step.attempt]
    return max(own) + 1 if own else len(step.activities)
