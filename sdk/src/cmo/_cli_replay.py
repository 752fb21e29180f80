"""`cmoctl replay`: time travel through a run, verify its code against it, compare two runs."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import difflib
import importlib
import json
import sys
from typing import Any

import click
from rich.text import Text

from cmo._cli_output import console, emit, print_table
from cmo._cli_render import attempts
from cmo._graph import Graph
from cmo._history import RunHistory
from cmo._http import KIND_HTTP
from cmo._types import RecordedActivity
from cmo.testing import Replayer, ReplayReport, StepVerdict

__all__ = [
    "compare",
    "compare_table",
    "load_graphs",
    "print_report",
    "print_steps",
    "shown_result",
    "state_diff",
    "verify",
]


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


def state_diff(recorded: Any, replayed: Any) -> list[str]:
    """The lines by which the replayed state differs from the recorded one (a unified diff of their JSON)."""

    def lines(state: Any) -> list[str]:
        return json.dumps(state, indent=2, sort_keys=True, ensure_ascii=False).splitlines()

    diff = difflib.unified_diff(lines(recorded), lines(replayed), "recorded", "replayed", n=2, lineterm="")
    return list(diff)


def _first_divergence(report: ReplayReport, history: RunHistory) -> tuple[StepVerdict, list[str]] | None:
    """The first step that did not match, and its state diff (empty when there is no state to compare)."""
    bad = next((v for v in report.steps if not v.ok), None)
    if bad is None:
        return None
    step = next(s for s in history.steps if s.step_index == bad.step_index)
    return bad, [] if bad.replayed_state is None else state_diff(step.state, bad.replayed_state)


def print_report(report: ReplayReport, history: RunHistory, output: str) -> None:
    """The verdict of a verification: a table with the state diff at the first diverging step, or a document."""
    first = _first_divergence(report, history)
    if output != "table":
        steps = [dataclasses.asdict(v) | {"ok": v.ok} for v in report.steps]
        if first is not None:
            bad, diff = first
            steps[report.steps.index(bad)]["state_diff"] = diff
        emit(output, {"run_id": report.run_id, "ok": report.ok, "steps": steps})
        return
    out = console()
    rows = [[str(v.step_index), v.node_id, v.recorded_hash[:12], v.replayed_hash[:12] or "-",
             "ok" if v.ok else Text(v.problem, style="red")] for v in report.steps]  # fmt: skip
    print_table(("step", "node", "recorded", "replayed", "verdict"), rows, out=out)
    if first is not None and first[1]:
        bad, diff = first
        out.print(f"state after step {bad.step_index} ({bad.node_id}), recorded and replayed:", highlight=False)
        for line in diff:
            style = "red" if line.startswith("-") else "green" if line.startswith("+") else None
            out.print(line, style=style, markup=False, highlight=False)
    matched = sum(v.ok for v in report.steps)
    verdict = "[green]deterministic[/]" if report.ok else "[red]DIVERGES[/]"
    out.print(f"{matched}/{len(report.steps)} steps match: {verdict}")


def shown_result(activity: RecordedActivity) -> Any:
    """An activity's recorded result as `--verbose` shows it: an HTTP body as text when it is text."""
    result = activity.result
    if activity.kind != KIND_HTTP or not isinstance(result, dict) or not isinstance(result.get("body"), str):
        return result
    try:
        body = base64.b64decode(result["body"], validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return result  # bytes that are not text: left as the record has them, base64
    if any(not c.isprintable() and c not in "\t\n\r" for c in body):
        return result
    return {**result, "body": body}


def print_steps(history: RunHistory, to_step: int | None, *, verbose: bool, output: str) -> None:
    """The recorded steps (up to `to_step`): the run as it was at that point."""
    shown = [s for s in history.steps if to_step is None or s.step_index <= to_step]
    if output != "table":
        doc = history.to_json()
        doc["steps"] = [s for s in doc["steps"] if to_step is None or s["step_index"] <= to_step]
        emit(output, doc)
        return
    out = console()
    rows = [[str(s.step_index), s.node_id, attempts(s), s.state_hash[:12], str(len(s.activities)),
             "END" if s.next_node == "__end__" else f"{s.next_key} -> {s.next_node}"] for s in shown]  # fmt: skip
    print_table(("step", "node", "attempt", "state hash", "activities", "next"), rows, out=out)
    if verbose:
        for s in shown:
            out.print(f"[bold]step {s.step_index}[/] {s.node_id} at {s.logical_time.isoformat()}")
            for a in s.activities:
                outcome = shown_result(a) if a.error is None else f"error {a.error.type}: {a.error.message}"
                out.print(f"  activity {a.seq} {a.kind} {a.name}: {json.dumps(outcome, ensure_ascii=False)}",
                          markup=False, highlight=False)  # fmt: skip
            out.print(f"  state: {json.dumps(s.state, sort_keys=True)}", markup=False, highlight=False)
    if shown:
        last = json.dumps(shown[-1].state, sort_keys=True)
        out.print(f"state after step {shown[-1].step_index}: {last}", markup=False, highlight=False)


def compare(first: RunHistory, second: RunHistory, to_step: int | None, output: str) -> float:
    """Print the step-by-step comparison of two runs; returns the share of steps that match."""
    rows, percent = compare_table(first, second, to_step)
    if output != "table":
        emit(output, {"match_percent": percent, "steps": rows})
        return percent
    cells = [[str(r["step_index"]), r["node"] or "-", r["other_node"] or "-", (r["state_hash"] or "-")[:12],
              (r["other_state_hash"] or "-")[:12], "yes" if r["match"] else Text("no", style="red")]
             for r in rows]  # fmt: skip
    out = console()
    print_table(("step", "node", "other node", "state hash", "other hash", "match"), cells, out=out)
    out.print(f"match: {percent:.1f}%")
    return percent


def compare_table(
    first: RunHistory, second: RunHistory, to_step: int | None = None
) -> tuple[list[dict[str, Any]], float]:
    """Step-by-step comparison of two runs (up to `to_step`) and the share of steps that match (node and hash)."""
    rows = []
    for i in range(max(len(first.steps), len(second.steps))):
        if to_step is not None and i > to_step:
            break
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
