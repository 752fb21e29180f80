"""A history replayed through its graph version: it passes as recorded, and each way it can disagree
with the graph is named at the first step where it does."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from cmo.serialization import canonical_json, state_hash
from cmo_server.domain import END_NODE, ActivityRecord, GraphSpec, Namespace, NodeSpec, Run, RunStatus, Step
from cmo_server.verification import verify_history

NS = Namespace("acme", "web")
NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
GRAPH = GraphSpec(
    "triage",
    2,
    "classify",
    {n: NodeSpec(n, task_queue="default") for n in ("classify", "fix", "review")},
    {("classify", "broken"): "fix", ("fix", "done"): "review", ("review", "again"): "fix"},
    NS,
)
RUN = Run(NS, "r-1", "triage", 2, RunStatus.COMPLETED, b"{}", 1, 4, "", NOW, NOW)


def step(index: int, node: str, key: str, to: str, **state: object) -> Step:
    body = canonical_json({"at": index, **state})
    return Step("r-1", index, node, 1, body, state_hash(body), b"null", key, to, NOW, NOW, NOW)


HISTORY = [
    step(0, "classify", "broken", "fix"),
    step(1, "fix", "done", "review"),
    step(2, "review", "again", "fix"),
    step(3, "fix", "done", "review"),
]
FINISHED = [*HISTORY, step(4, "review", END_NODE, END_NODE)]


def test_a_history_as_recorded_replays_through_its_graph():
    outcome = verify_history(GRAPH, replace(RUN, step_count=5), FINISHED)
    assert outcome.ok
    assert (outcome.graph_id, outcome.graph_version, outcome.steps) == ("triage", 2, 5)
    # A run still going: its last step may lead anywhere the graph goes.
    assert verify_history(GRAPH, replace(RUN, status=RunStatus.RUNNING), HISTORY).ok


@pytest.mark.parametrize(
    ("history", "at", "check", "says"),
    [
        ([HISTORY[0], HISTORY[2]], 2, "numbering", "step 2 comes where step 1 should"),
        ([step(0, "fix", "done", "review")], 0, "path", "the graph's entry node leads to 'classify'"),
        ([HISTORY[0], step(1, "review", "again", "fix")], 1, "path", "step 0's edge leads to 'fix'"),
        ([step(0, "classify", "fine", "review")], 0, "edges", "edge 'fine', which node 'classify' does not have"),
        ([step(0, "classify", "broken", "review")], 0, "edges", "the graph leads to 'fix'"),
        ([HISTORY[0], replace(HISTORY[1], state=b'{"at":1,"x":2}')], 1, "state_hashes", "its state hashes to"),
        ([step(0, "classify", END_NODE, END_NODE), HISTORY[1]], 0, "ending", "led to the end, yet step 1 follows"),
        (HISTORY, 3, "ending", "the run completed, but its last step leads to 'review'"),
    ],
)
def test_the_first_disagreement_is_named_with_its_step(history, at, check, says):
    outcome = verify_history(GRAPH, RUN, history)
    assert not outcome.ok
    assert outcome.divergence is not None
    assert (outcome.divergence.step_index, outcome.divergence.check) == (at, check)
    assert says in outcome.divergence.message


def test_activities_are_numbered_without_a_gap():
    record = ActivityRecord(0, "http", "get", "h", b"1", None, 1)
    fine = replace(HISTORY[0], activities=(record, replace(record, seq=1)))
    assert verify_history(GRAPH, replace(RUN, status=RunStatus.RUNNING), [fine]).ok
    gap = replace(HISTORY[0], activities=(record, replace(record, seq=2)))
    outcome = verify_history(GRAPH, replace(RUN, status=RunStatus.RUNNING), [gap])
    assert outcome.divergence is not None
    assert outcome.divergence.check == "activities"


def test_a_completed_run_without_steps_does_not_replay():
    outcome = verify_history(GRAPH, RUN, [])
    assert outcome.divergence is not None
    assert outcome.divergence.message == "the run completed, but it has no step"
