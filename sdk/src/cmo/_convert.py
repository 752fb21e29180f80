"""pb <-> SDK value conversion, client side. pb2 types stop here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from cmo._graph import Graph
from cmo._types import FailureInfo, RecordedActivity, RunInfo, RunProgress, RunStatus, StepInfo, WaitInfo
from cmo.api.v1 import common_pb2
from cmo.serialization import canonical_json, parse_json

__all__ = [
    "activity_from_proto",
    "activity_to_proto",
    "graph_to_proto",
    "run_from_proto",
    "step_from_proto",
]


def _dt(ts: Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


def _json_or_none(data: bytes) -> Any:
    return parse_json(data) if data else None


def graph_to_proto(graph: Graph[Any]) -> common_pb2.GraphDef:
    """The wire definition of a graph (validated first)."""
    graph.validate()
    msg = common_pb2.GraphDef(graph_id=graph.graph_id, version=graph.version, entry_node=graph.entry or "")
    for node in graph.nodes.values():
        retry = common_pb2.RetryPolicy(
            max_attempts=node.retry.max_attempts,
            backoff=node.retry.backoff,
            non_retryable_errors=list(node.retry.non_retryable_errors),
        )
        retry.initial_interval.FromTimedelta(node.retry.initial_interval)
        if node.retry.max_interval is not None:
            retry.max_interval.FromTimedelta(node.retry.max_interval)
        msg.nodes.append(common_pb2.NodeDef(node_id=node.name, task_queue=node.task_queue, retry=retry))
        for key, target in sorted(node.edges.items()):
            msg.edges.append(common_pb2.EdgeDef(from_node=node.name, key=key, to_node=target))
    return msg


def failure_from_proto(msg: common_pb2.Failure) -> FailureInfo:
    """A failure as the SDK reports it."""
    return FailureInfo(
        message=msg.message,
        type=msg.type,
        node_id=msg.node_id,
        step_index=msg.step_index,
        attempt=msg.attempt,
        details=msg.details,
    )


def run_from_proto(msg: common_pb2.Run) -> RunInfo:
    """A run as the SDK reports it."""
    return RunInfo(
        run_id=msg.run_id,
        graph_id=msg.graph_id,
        graph_version=msg.graph_version,
        status=RunStatus(msg.status),
        step_count=msg.step_count,
        current_node=msg.current_node,
        created_at=_dt(msg.created_at),
        updated_at=_dt(msg.updated_at),
        completed_at=_dt(msg.completed_at) if msg.HasField("completed_at") else None,
        input=_json_or_none(msg.input),
        result=_json_or_none(msg.result),
        failure=failure_from_proto(msg.failure) if msg.HasField("failure") else None,
        seed=msg.seed,
        parent_run_id=msg.parent_run_id,
        forked_from_step=msg.forked_from_step,
        waiting=_wait_from_proto(msg.waiting) if msg.HasField("waiting") else None,
        cancel_requested=msg.cancel_requested,
        progress=_progress_from_proto(msg.progress) if msg.HasField("progress") else None,
        tenant=msg.namespace.tenant or "default",
        project=msg.namespace.project or "default",
    )


def _progress_from_proto(msg: common_pb2.RunProgress) -> RunProgress:
    return RunProgress(
        reason=common_pb2.RunProgress.Reason.Name(msg.reason).lower(),
        summary=msg.summary,
        task_queue=msg.task_queue,
        step_index=msg.step_index,
        attempt=msg.attempt,
        worker_id=msg.worker_id,
        until=_dt(msg.until) if msg.HasField("until") else None,
        last_poll=_dt(msg.last_poll) if msg.HasField("last_poll") else None,
        last_failure=failure_from_proto(msg.last_failure) if msg.HasField("last_failure") else None,
        signal_name=msg.signal_name,
        pollers=msg.pollers,
        agent_id=msg.agent_id,
    )


def _wait_from_proto(msg: common_pb2.Wait) -> WaitInfo:
    return WaitInfo(
        kind=msg.kind,
        name=msg.name,
        until=_dt(msg.until) if msg.HasField("until") else None,
        step_index=msg.step_index,
        seq=msg.seq,
    )


def step_from_proto(msg: common_pb2.Step) -> StepInfo:
    """A checkpoint as the SDK reports it."""
    return StepInfo(
        step_index=msg.step_index,
        node_id=msg.node_id,
        attempt=msg.attempt,
        state=_json_or_none(msg.state),
        state_hash=msg.state_hash,
        output=_json_or_none(msg.output),
        next_key=msg.next_key,
        next_node=msg.next_node,
        logical_time=_dt(msg.logical_time),
        started_at=_dt(msg.started_at),
        finished_at=_dt(msg.finished_at),
        activities=tuple(activity_from_proto(a) for a in msg.activities),
    )


def activity_from_proto(msg: common_pb2.Activity) -> RecordedActivity:
    """A recorded activity as the SDK reports it."""
    return RecordedActivity(
        seq=msg.seq,
        kind=msg.kind,
        name=msg.name,
        request_hash=msg.request_hash,
        result=_json_or_none(msg.result),
        error=failure_from_proto(msg.error) if msg.HasField("error") else None,
        attempt=msg.attempt,
    )


def activity_to_proto(activity: RecordedActivity) -> common_pb2.Activity:
    """A recorded activity back in wire form (what a replayed step is handed)."""
    msg = common_pb2.Activity(
        seq=activity.seq, kind=activity.kind, name=activity.name, request_hash=activity.request_hash,
        attempt=activity.attempt,
    )  # fmt: skip
    if activity.error is not None:
        msg.error.CopyFrom(common_pb2.Failure(message=activity.error.message, type=activity.error.type))
    else:
        msg.result = canonical_json(activity.result)
    return msg


def duration(seconds: float) -> Any:
    """A protobuf Duration."""
    from google.protobuf.duration_pb2 import Duration

    d = Duration()
    d.FromTimedelta(timedelta(seconds=seconds))
    return d
