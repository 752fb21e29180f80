"""`cmoctl replay`: time travel through a run, verify its code against it, compare two runs."""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from typing import Any

import click
from rich.console import Console

from cmo._graph import Graph
from cmo._history import RunHistory
from cmo.testing import Replayer, ReplayReport

__all__ = ["compare_table", "load_graphs", "print_report", "print_steps"]


def load_graphs(specs: tuple[str, ...]) -> list[Graph[Any]]:
    """Graphs named `module:attr` (a Graph, or a list of them)."""
    graphs: list[Graph[Any]] = []
    for spec in specs:
        module_name, _, attr = spec.partition(":")
        if not module_name or not attr:
            raise click.BadParameter(f"{spec!r} is not module:attr", param_hint="--graph")
        sys.path.insert(0, ".")
        try:
            value = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as err:
            raise click.BadParameter(f"cannot load {spec}: {err}", param_hint="--graph") from None
        found = value if isinstance(value, list | tuple) else [value]
        if not all(isinstance(g, Graph) for g in found):
            raise click.BadParameter(f"{spec} is not a cmo.Graph", param_hint="--graph")
        graphs.extend(found)
    return graphs


def verify(history: RunHistory, graphs: list[Graph[Any]], to_step: int | None) -> ReplayReport:
    """Replay `history` against the graphs' code."""
    try:
        return asyncio.run(Replayer(graphs).replay(history, to_step=to_step))
    except ValueError as err:
        raise click.UsageError(str(err)) from None


def print_report(console: Console, report: ReplayReport, table: Any) -> None:
    """The verdict table of a verification."""
    for v in report.steps:
        table.add_row(str(v.step_index), v.node_id, v.recorded_hash[:12], v.replayed_hash[:12] or "-",
                      "ok" if v.ok else f"[red]{v.problem}[/]")  # fmt: skip
    console.print(table)
    matched = sum(v.ok for v in report.steps)
    verdict = "[green]deterministic[/]" if report.ok else "[red]DIVERGES[/]"
    console.print(f"{matched}/{len(report.steps)} steps match: {verdict}")


def print_steps(console: Console, history: RunHistory, to_step: int | None, *, verbose: bool, table: Any) -> None:
    """The recorded steps (up to `to_step`): the run as it was at that point."""
    shown = [s for s in history.steps if to_step is None or s.step_index <= to_step]
    for s in shown:
        table.add_row(str(s.step_index), s.node_id, str(s.attempt), s.state_hash[:12], str(len(s.activities)),
                      "END" if s.next_node == "__end__" else f"{s.next_key} -> {s.next_node}")  # fmt: skip
    console.print(table)
    if verbose:
        for s in shown:
            console.print(f"[bold]step {s.step_index}[/] {s.node_id} at {s.logical_time.isoformat()}")
            for a in s.activities:
                outcome = a.result if a.error is None else f"error {a.error.type}: {a.error.message}"
                console.print(f"  activity {a.seq} {a.kind} {a.name}: {json.dumps(outcome)}")
            console.print(f"  state: {json.dumps(s.state, sort_keys=True)}")
    if shown:
        console.print(f"state after step {shown[-1].step_index}: {json.dumps(shown[-1].state, sort_keys=True)}")


def compare_table(first: RunHistory, second: RunHistory) -> tuple[list[dict[str, Any]], float]:
    """Step-by-step comparison of two runs and the share of steps that match (node and hash)."""
    rows = []
    for i in range(max(len(first.steps), len(second.steps))):
        a = first.steps[i] if i < len(first.steps) else None
        b = second.steps[i] if i < len(second.steps) else None
        same = a is not None and b is not None and (a.node_id, a.state_hash) == (b.node_id, b.state_hash)
        rows.append({
            "step_index": i,
            "node": a.node_id if a else None, "other_node": b.node_id if b else None,
            "state_hash": a.state_hash if a else None, "other_state_hash": b.state_hash if b else None,
            "match": same,
        })  # fmt: skip
    matched = sum(1 for r in rows if r["match"])
    return rows, (100.0 * matched / len(rows)) if rows else 100.0
