"""What `cmoctl` says about runs and steps: their documents (JSON, YAML), table rows and lines."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from rich.text import Text

from cmo._activity import WAIT_KINDS
from cmo._types import RunInfo, RunProgress, StepInfo, WaitInfo

__all__ = [
    "RUN_COLUMNS",
    "STEP_COLUMNS",
    "attempts",
    "describe_wait",
    "progress_cell",
    "run_document",
    "run_lines",
    "run_row",
    "run_summary",
    "step_row",
]

RUN_COLUMNS = ("run id", "graph", "status", "steps", "node", "progress", "created")
STEP_COLUMNS = ("step", "node", "attempt", "duration ms", "state hash", "next")
WIDE = 160
"""Terminal columns from which `runs list` shows a run's progress in words rather than its reason."""


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def _stamp(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def describe_wait(wait: WaitInfo) -> str:
    """What a waiting run waits for, in words."""
    what = f"signal {wait.name!r}" if wait.kind == "signal" else "a timer"
    until = "" if wait.until is None else f" until {wait.until.strftime('%Y-%m-%d %H:%M:%S')} UTC"
    return f"{what}{until} (step {wait.step_index}, seq {wait.seq})"


def _plain_wait(wait: WaitInfo | None) -> dict[str, Any] | None:
    return None if wait is None else {**dataclasses.asdict(wait), "until": _stamp(wait.until)}


def _plain_progress(progress: RunProgress | None) -> dict[str, Any] | None:
    if progress is None:
        return None
    doc = dataclasses.asdict(progress)
    doc["until"], doc["last_poll"] = _stamp(progress.until), _stamp(progress.last_poll)
    return doc


def run_summary(run: RunInfo) -> dict[str, Any]:
    """A run as `runs list` prints it in JSON or YAML."""
    return {
        "run_id": run.run_id,
        "graph": f"{run.graph_id}@{run.graph_version}",
        "status": run.status.name,
        "steps": run.step_count,
        "node": run.current_node or None,
        "progress": _plain_progress(run.progress),
        "created_at": run.created_at.isoformat(),
    }


def run_document(run: RunInfo, steps: list[StepInfo]) -> dict[str, Any]:
    """A run and its steps as `runs show` prints them in JSON or YAML."""
    return {
        "run_id": run.run_id,
        "graph_id": run.graph_id,
        "graph_version": run.graph_version,
        "status": run.status.name,
        "result": run.result,
        "failure": None if run.failure is None else run.failure.message,
        "waiting": _plain_wait(run.waiting),
        "progress": _plain_progress(run.progress),
        "cancel_requested": run.cancel_requested,
        "steps": [
            {
                "step_index": s.step_index,
                "node_id": s.node_id,
                "attempt": s.attempt,
                "resumed": _resumes(s),
                "duration_ms": round(s.duration_ms, 3),
                "state_hash": s.state_hash,
                "next_key": s.next_key,
                "next_node": s.next_node,
            }
            for s in steps
        ],
    }


def progress_cell(run: RunInfo, *, wide: bool) -> str:
    """The progress column of `runs list`: why an unfinished run is where it is (its reason when narrow)."""
    if run.progress is None or run.status.terminal:
        return "-"
    return run.progress.summary if wide else run.progress.reason


def run_row(run: RunInfo, *, wide: bool) -> list[str]:
    """A run as a row of `runs list` (RUN_COLUMNS)."""
    status = run.status.name
    if run.waiting is not None:
        status = f"{status} ({run.waiting.kind} {run.waiting.name})".replace(" )", ")")
    return [
        run.run_id,
        f"{run.graph_id}@{run.graph_version}",
        status,
        str(run.step_count),
        run.current_node or "-",
        progress_cell(run, wide=wide),
        _when(run.created_at),
    ]


def run_lines(run: RunInfo) -> list[Text]:
    """What `runs show` says above the step table: the run, what it waits for, how it failed."""
    lines = [
        Text.assemble(
            "run ",
            (run.run_id, "bold"),
            f"  graph {run.graph_id}@{run.graph_version}  status ",
            (run.status.name, "bold"),
            f"  steps {run.step_count}  created {_when(run.created_at)}",
        )
    ]
    if run.waiting is not None:
        lines.append(Text(f"waiting for {describe_wait(run.waiting)}"))
    if run.progress is not None and not run.status.terminal:
        lines.append(Text(f"progress: {run.progress.summary}"))
        failure = run.progress.last_failure
        if failure is not None:
            lines.append(Text(f"  last failure (attempt {failure.attempt}): {failure.type}: {failure.message}"))
    if run.cancel_requested and not run.status.terminal:
        lines.append(Text("cancel requested: the node stops at its next ctx call"))
    if run.failure is not None:
        lines.append(
            Text(
                f"failure at step {run.failure.step_index} ({run.failure.node_id}, attempt "
                f"{run.failure.attempt}): {run.failure.type}: {run.failure.message}"
            )
        )
    return lines


def _resumes(step: StepInfo) -> int:
    """How many attempts of the step ended in a wait, each followed by an attempt that resumed it."""
    return len({a.attempt for a in step.activities if a.kind in WAIT_KINDS and a.attempt < step.attempt})


def attempts(step: StepInfo) -> str:
    """The attempt that completed a step, telling retries (an attempt failed) from resumes (after a wait)."""
    resumed = _resumes(step)
    retries = step.attempt - 1 - resumed
    told = [f"{retries} {'retry' if retries == 1 else 'retries'}"] if retries > 0 else []
    if resumed:
        told.append("resumed" if resumed == 1 else f"resumed {resumed}x")
    return f"{step.attempt} ({', '.join(told)})" if told else str(step.attempt)


def step_row(step: StepInfo) -> list[str]:
    """A step as a row of `runs show` (STEP_COLUMNS)."""
    return [
        str(step.step_index),
        step.node_id,
        attempts(step),
        f"{step.duration_ms:.1f}",
        step.state_hash[:12],
        "END" if step.next_node == "__end__" else f"{step.next_key} -> {step.next_node}",
    ]
