"""Domain values as JSON for the web UI, in the shapes the SDK reports them.

A run and its steps come out as `cmo.RunInfo` and `cmo.StepInfo` do in a history export
(`RunHistory.to_json`, `cmoctl runs export`): the same field names, statuses by name, times in
ISO 8601, payloads parsed. So the UI's export download is that very document, and the pages read
what a user of the SDK would see.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cmo.serialization import parse_json
from cmo_server.domain import ActivityRecord, Failure, GraphSpec, Run, Step
from cmo_server.progress import Poller, Progress
from cmo_server.registry import Agent

__all__ = [
    "HISTORY_FORMAT",
    "agent_json",
    "failure_json",
    "graph_json",
    "history_json",
    "poller_json",
    "progress_json",
    "run_json",
    "step_json",
]

HISTORY_FORMAT = "cmo.history/v1"
"""The `format` of a history document (`cmo.testing.RunHistory`)."""


def _when(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _payload(data: bytes | None) -> Any:
    return parse_json(data) if data else None


def failure_json(failure: Failure | None) -> dict[str, Any] | None:
    """A failure as `cmo.FailureInfo`."""
    if failure is None:
        return None
    return {
        "message": failure.message,
        "type": failure.type,
        "node_id": failure.node_id,
        "step_index": failure.step_index,
        "attempt": failure.attempt,
        "details": failure.details,
    }


def progress_json(progress: Progress | None) -> dict[str, Any] | None:
    """What an unfinished run waits for, as `cmo.RunProgress` (the reason in lower case)."""
    if progress is None:
        return None
    return {
        "reason": progress.reason.name.lower(),
        "summary": progress.summary,
        "task_queue": progress.task_queue,
        "step_index": progress.step_index,
        "attempt": progress.attempt,
        "worker_id": progress.worker_id,
        "until": _when(progress.until),
        "last_poll": _when(progress.last_poll),
        "last_failure": failure_json(progress.last_failure),
        "signal_name": progress.signal_name,
        "pollers": progress.pollers,
        "agent_id": progress.agent_id,
    }


def run_json(run: Run, progress: Progress | None = None) -> dict[str, Any]:
    """A run as `cmo.RunInfo`."""
    wait = run.waiting
    return {
        "run_id": run.run_id,
        "graph_id": run.graph_id,
        "graph_version": run.graph_version,
        "status": run.status.name,
        "step_count": run.step_count,
        "current_node": run.current_node,
        "created_at": _when(run.created_at),
        "updated_at": _when(run.updated_at),
        "completed_at": _when(run.completed_at),
        "input": _payload(run.input),
        "result": _payload(run.result),
        "failure": failure_json(run.failure),
        "seed": run.seed,
        "parent_run_id": run.parent_run_id,
        "forked_from_step": run.forked_from_step,
        "waiting": None
        if wait is None
        else {
            "kind": wait.kind,
            "name": wait.name,
            "until": _when(wait.until),
            "step_index": wait.step_index,
            "seq": wait.seq,
        },
        "cancel_requested": run.cancel_requested,
        "progress": progress_json(progress),
        "tenant": run.namespace.tenant,
        "project": run.namespace.project,
    }


def _activity_json(activity: ActivityRecord) -> dict[str, Any]:
    return {
        "seq": activity.seq,
        "kind": activity.kind,
        "name": activity.name,
        "request_hash": activity.request_hash,
        "result": _payload(activity.result),
        "error": failure_json(activity.error),
        "attempt": activity.attempt,
    }


def step_json(step: Step) -> dict[str, Any]:
    """A checkpointed step, with its activities, as `cmo.StepInfo`."""
    return {
        "step_index": step.step_index,
        "node_id": step.node_id,
        "attempt": step.attempt,
        "state": _payload(step.state),
        "state_hash": step.state_hash,
        "output": _payload(step.output),
        "next_key": step.next_key,
        "next_node": step.next_node,
        "logical_time": _when(step.logical_time),
        "started_at": _when(step.started_at),
        "finished_at": _when(step.finished_at),
        "activities": [_activity_json(a) for a in step.activities],
    }


def history_json(run: Run, progress: Progress | None, steps: list[Step]) -> dict[str, Any]:
    """The history document `client.export_history(run_id).to_json()` gives for this run."""
    document = run_json(run, progress)
    if document["progress"] is None:  # as RunHistory.to_json leaves it out
        del document["progress"]
    return {"format": HISTORY_FORMAT, "run": document, "steps": [step_json(s) for s in steps]}


def graph_json(graph: GraphSpec) -> dict[str, Any]:
    """A registered graph version: its nodes (with queues and retry policies) and edges, for drawing."""
    return {
        "graph_id": graph.graph_id,
        "version": graph.version,
        "entry_node": graph.entry_node,
        "nodes": [
            {
                "node_id": node.node_id,
                "task_queue": node.task_queue,
                "max_attempts": node.retry.max_attempts,
            }
            for node in sorted(graph.nodes.values(), key=lambda n: n.node_id)
        ],
        "edges": [{"from": f, "key": k, "to": t} for (f, k), t in sorted(graph.edges.items())],
    }


def agent_json(agent: Agent) -> dict[str, Any]:
    """An agent as the registry knows it (its lease id is not part of it)."""
    return {
        "agent_id": agent.agent_id,
        "kind": agent.kind,
        "name": agent.name,
        "version": agent.version,
        "capabilities": list(agent.capabilities),
        "topics": [{"topic": t.topic, "role": t.role.name} for t in agent.topics],
        "metadata": dict(agent.metadata),
        "status": agent.status.name,
        "status_reason": agent.status_reason,
        "load": agent.load,
        "lease_s": agent.lease.total_seconds(),
        "lease_expires_at": _when(agent.lease_expires_at),
        "registered_at": _when(agent.registered_at),
        "last_heartbeat_at": _when(agent.last_heartbeat_at),
        "last_poll_at": _when(agent.last_poll_at),
    }


def poller_json(poller: Poller) -> dict[str, Any]:
    """A worker's last poll of a queue, with the graph versions it polled for (`graph@version`)."""
    return {
        "task_queue": poller.task_queue,
        "worker_id": poller.worker_id,
        "graphs": [key.rpartition("/")[2] for key in poller.graph_keys],
        "last_poll": _when(poller.last_poll),
    }
