"""Replay of the shipped golden history: the triage example still produces it, step by step."""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from dataclasses import replace as dc_replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import cmo
from cmo._graph import NodeFn
from cmo.testing import ReplayDivergenceError, Replayer, ReplayReport, RunHistory

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "fixtures" / "triage-history.json"


@pytest.fixture
def triage_module():
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        yield importlib.import_module("triage")
    finally:
        sys.path.remove(str(ROOT / "examples"))


def replay(graph: cmo.Graph[Any], history: RunHistory) -> ReplayReport:
    return asyncio.run(Replayer([graph]).replay(history))


def test_the_golden_history_replays_exactly(triage_module):
    report = replay(triage_module.triage, RunHistory.load(GOLDEN))
    assert [v.step_index for v in report.steps] == [0, 1, 2]
    assert report.ok, report
    report.raise_for_divergence()


def test_a_history_survives_export_and_import():
    doc = json.loads(GOLDEN.read_text())
    assert RunHistory.from_json(doc).to_json() == doc
    with pytest.raises(ValueError, match="not a run history"):
        RunHistory.from_json({"format": "something else"})


def copy_of_triage(triage_module: ModuleType, **nodes: NodeFn) -> cmo.Graph[Any]:
    """The triage graph with some node functions replaced."""
    graph = cmo.Graph("triage", version=1, state=triage_module.Ticket)
    for name, node in triage_module.triage.nodes.items():
        graph.nodes[name] = dc_replace(node, fn=nodes.get(name, node.fn))
    graph.entry = triage_module.triage.entry
    return graph


def test_a_node_calling_another_activity_is_reported_with_seq_and_both_names(triage_module):
    @cmo.activity(name="classify_with_llm")
    async def classify_with_llm(text: str) -> str:
        raise AssertionError("replay must not run activities")

    async def classify(ticket, ctx):
        label = await ctx.activity(classify_with_llm, ticket.text)
        return cmo.NodeResult(dc_replace(ticket, label=label), next="escalate")

    report = replay(copy_of_triage(triage_module, classify=classify), RunHistory.load(GOLDEN))
    first = report.steps[0]
    assert not first.ok
    assert "step 0, activity seq 0" in first.problem
    assert "'classify_text'" in first.problem
    assert "'classify_with_llm'" in first.problem
    with pytest.raises(ReplayDivergenceError, match="diverges at step 0"):
        report.raise_for_divergence()


def test_a_changed_state_is_a_divergence_at_that_step(triage_module):
    original = triage_module.triage.nodes["close"].fn

    async def close(ticket, ctx):
        result = await original(ticket, ctx)
        return cmo.NodeResult(dc_replace(result.state, log=[*result.state.log, "surveyed"]), next=result.next)

    report = replay(copy_of_triage(triage_module, close=close), RunHistory.load(GOLDEN))
    assert [v.ok for v in report.steps] == [True, True, False]
    assert report.steps[2].problem.startswith("state hash")


def test_an_activity_the_record_does_not_have_is_nondeterminism(triage_module):
    @cmo.activity
    async def notify(to: str) -> bool:
        return True

    original = triage_module.triage.nodes["close"].fn

    async def close(ticket, ctx):
        await ctx.activity(notify, "ops")
        return await original(ticket, ctx)

    report = replay(copy_of_triage(triage_module, close=close), RunHistory.load(GOLDEN))
    assert "recorded nothing" in report.steps[2].problem
