"""pb <-> domain conversion for the server side. pb2 types stop here."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp

from cmo.api.v1 import common_pb2, worker_service_pb2
from cmo_server.api._namespace import namespace_to_proto
from cmo_server.api._task_token import TaskTokens
from cmo_server.api._validate import check_duration, check_id, check_range, check_text, duration_or
from cmo_server.artifacts import format_digest
from cmo_server.domain import (
    END_NODE,
    WAIT_KINDS,
    WAIT_SIGNAL,
    WAIT_TIMER,
    ActivityRecord,
    Artifact,
    Failure,
    GraphSpec,
    Namespace,
    NodeSpec,
    RetrySpec,
    Run,
    Step,
    Task,
    WaitRequest,
)
from cmo_server.errors import InvalidArgument, shown
from cmo_server.progress import Progress

__all__ = [
    "activity_from_proto",
    "activity_to_proto",
    "artifact_to_proto",
    "failure_from_proto",
    "graph_from_proto",
    "graph_to_proto",
    "run_to_proto",
    "step_to_proto",
    "task_to_proto",
    "wait_from_proto",
]

MAX_NODES = 1000
MAX_EDGES = 10_000
MAX_ERROR_NAMES = 100
"""Most non_retryable_errors of one node."""
MAX_HASH_LENGTH = 128
MAX_FAILURE_MESSAGE = 4096
MAX_FAILURE_TYPE = 256
MAX_FAILURE_DETAILS = 65536
MAX_SEQ = 1_000_000
MAX_VERSION = 2**31 - 1
MAX_RETRY_INTERVAL = timedelta(days=3650)
"""Longest retry interval (and reported activity run time): ten years, well inside a timestamp."""


def _ts(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def graph_from_proto(msg: common_pb2.GraphDef, namespace: Namespace) -> GraphSpec:
    """A validated graph definition, to register in `namespace`."""
    graph_id = check_id("graph.graph_id", msg.graph_id)
    version = check_range("graph.version", msg.version, 1, MAX_VERSION)
    if not msg.nodes:
        raise InvalidArgument("graph.nodes", "a graph needs at least one node")
    if len(msg.nodes) > MAX_NODES:
        raise InvalidArgument("graph.nodes", f"{len(msg.nodes)} nodes is over the limit of {MAX_NODES}")
    if len(msg.edges) > MAX_EDGES:
        raise InvalidArgument("graph.edges", f"{len(msg.edges)} edges is over the limit of {MAX_EDGES}")
    nodes: dict[str, NodeSpec] = {}
    for i, n in enumerate(msg.nodes):
        node_id = check_id(f"graph.nodes[{i}].node_id", n.node_id)
        if node_id == END_NODE or node_id in nodes:
            raise InvalidArgument(f"graph.nodes[{i}].node_id", f"{shown(node_id)} is reserved or used twice")
        queue = check_id(f"graph.nodes[{i}].task_queue", n.task_queue, required=False) or "default"
        retry = _retry_from_proto(f"graph.nodes[{i}].retry", n.retry) if n.HasField("retry") else RetrySpec()
        nodes[node_id] = NodeSpec(node_id, queue, retry)
    if msg.entry_node not in nodes:
        raise InvalidArgument("graph.entry_node", f"{shown(msg.entry_node)} is not one of the graph's nodes")
    edges: dict[tuple[str, str], str] = {}
    for i, e in enumerate(msg.edges):
        field = f"graph.edges[{i}]"
        if e.from_node not in nodes:
            raise InvalidArgument(f"{field}.from_node", f"{shown(e.from_node)} is not one of the graph's nodes")
        if e.to_node not in nodes and e.to_node != END_NODE:
            raise InvalidArgument(f"{field}.to_node", f"{shown(e.to_node)} is not one of the graph's nodes or END")
        key = check_id(f"{field}.key", e.key)
        if key == END_NODE or (e.from_node, key) in edges:
            raise InvalidArgument(f"{field}.key", f"{shown(key)} is reserved or used twice from {shown(e.from_node)}")
        edges[(e.from_node, key)] = e.to_node
    return GraphSpec(graph_id, version, msg.entry_node, nodes, edges, namespace)


def graph_to_proto(graph: GraphSpec) -> common_pb2.GraphDef:
    """A registered graph version for the wire, every default filled in."""
    nodes = []
    for node in sorted(graph.nodes.values(), key=lambda n: n.node_id):
        retry = common_pb2.RetryPolicy(
            max_attempts=node.retry.max_attempts,
            backoff=node.retry.backoff,
            non_retryable_errors=node.retry.non_retryable_errors,
        )
        retry.initial_interval.FromTimedelta(node.retry.initial_interval)
        if node.retry.max_interval is not None:
            retry.max_interval.FromTimedelta(node.retry.max_interval)
        nodes.append(common_pb2.NodeDef(node_id=node.node_id, task_queue=node.task_queue, retry=retry))
    return common_pb2.GraphDef(
        graph_id=graph.graph_id,
        version=graph.version,
        entry_node=graph.entry_node,
        nodes=nodes,
        edges=[common_pb2.EdgeDef(from_node=f, key=k, to_node=t) for (f, k), t in sorted(graph.edges.items())],
    )


def _retry_from_proto(field: str, msg: common_pb2.RetryPolicy) -> RetrySpec:
    if msg.max_attempts < 0:
        raise InvalidArgument(f"{field}.max_attempts", "must be >= 0 (0: no limit)")
    backoff = msg.backoff or 2.0
    if not 1 <= backoff < math.inf:  # NaN fails both comparisons
        raise InvalidArgument(f"{field}.backoff", f"must be a finite number >= 1, got {backoff}")
    initial = duration_or(
        f"{field}.initial_interval",
        msg.initial_interval,
        msg.HasField("initial_interval"),
        timedelta(seconds=1),
        MAX_RETRY_INTERVAL,
    )
    maximum = None
    if msg.HasField("max_interval"):
        maximum = check_duration(f"{field}.max_interval", msg.max_interval, maximum=MAX_RETRY_INTERVAL)
    return RetrySpec(
        max_attempts=msg.max_attempts,
        initial_interval=initial,
        backoff=backoff,
        max_interval=maximum,
        non_retryable_errors=_error_names(f"{field}.non_retryable_errors", msg.non_retryable_errors),
    )


def _error_names(field: str, names: Sequence[str]) -> tuple[str, ...]:
    if len(names) > MAX_ERROR_NAMES:
        raise InvalidArgument(field, f"{len(names)} error types is over the limit of {MAX_ERROR_NAMES}")
    return tuple(check_id(f"{field}[{i}]", name) for i, name in enumerate(names))


def activity_from_proto(msg: common_pb2.Activity, attempt: int, field: str = "activity") -> ActivityRecord:
    """A validated activity record sent by a worker (its result is checked by the engine); `field` names it."""
    if not 0 <= msg.seq <= MAX_SEQ:
        raise InvalidArgument(f"{field}.seq", f"must be between 0 and {MAX_SEQ}, got {msg.seq}")
    if msg.HasField("error") == bool(msg.result):
        raise InvalidArgument(field, "needs exactly one of result and error")
    return ActivityRecord(
        seq=msg.seq,
        kind=check_id(f"{field}.kind", msg.kind),
        name=check_id(f"{field}.name", msg.name),
        request_hash=check_text(f"{field}.request_hash", msg.request_hash, MAX_HASH_LENGTH),
        result=msg.result if not msg.HasField("error") else None,
        error=failure_from_proto(msg.error, f"{field}.error") if msg.HasField("error") else None,
        attempt=attempt,
        duration=_reported_duration(msg),
    )


def _reported_duration(msg: common_pb2.Activity) -> timedelta | None:
    """The worker's measure of how long the activity ran, if it sent a sane one (metrics only)."""
    if not msg.HasField("duration"):
        return None
    try:
        return check_duration("activity.duration", msg.duration, maximum=MAX_RETRY_INTERVAL)
    except InvalidArgument:
        return None  # a bad measure costs the metric a sample, not the record


def wait_from_proto(msg: worker_service_pb2.WaitRequest, *, max_duration: timedelta) -> WaitRequest:
    """A validated wait: a signal by name (timeout optional) or a timer (duration required)."""
    if msg.kind not in WAIT_KINDS:
        raise InvalidArgument("wait.kind", f"must be one of {', '.join(WAIT_KINDS)}, got {shown(msg.kind)}")
    if not 0 <= msg.seq <= MAX_SEQ:
        raise InvalidArgument("wait.seq", f"must be between 0 and {MAX_SEQ}, got {msg.seq}")
    request_hash = check_text("wait.request_hash", msg.request_hash, MAX_HASH_LENGTH)
    if msg.kind == WAIT_SIGNAL:
        name = check_id("wait.name", msg.name)
    elif msg.name:
        raise InvalidArgument("wait.name", "must be empty for a timer")
    else:
        name = ""
    if msg.kind == WAIT_TIMER and not msg.HasField("duration"):
        raise InvalidArgument("wait.duration", "is required for a timer")
    has = msg.HasField("duration")
    duration = duration_or("wait.duration", msg.duration, has, timedelta(0), max_duration) if has else None
    return WaitRequest(seq=msg.seq, kind=msg.kind, name=name, duration=duration, request_hash=request_hash)


def activity_to_proto(activity: ActivityRecord) -> common_pb2.Activity:
    """An activity record for the wire."""
    msg = common_pb2.Activity(
        seq=activity.seq,
        kind=activity.kind,
        name=activity.name,
        request_hash=activity.request_hash,
        result=activity.result or b"",
        attempt=activity.attempt,
    )
    if activity.error is not None:
        msg.error.CopyFrom(failure_to_proto(activity.error))
    if activity.recorded_at is not None:
        msg.recorded_at.CopyFrom(_ts(activity.recorded_at))
    return msg


def failure_from_proto(msg: common_pb2.Failure, field: str = "failure") -> Failure:
    """A worker-reported failure, its texts within their limits."""
    return Failure(
        message=check_text(f"{field}.message", msg.message, MAX_FAILURE_MESSAGE) or "(no message)",
        type=check_text(f"{field}.type", msg.type, MAX_FAILURE_TYPE),
        non_retryable=msg.non_retryable,
        details=check_text(f"{field}.details", msg.details, MAX_FAILURE_DETAILS),
    )


def failure_to_proto(failure: Failure) -> common_pb2.Failure:
    """A failure for the wire."""
    return common_pb2.Failure(
        message=failure.message,
        type=failure.type,
        non_retryable=failure.non_retryable,
        details=failure.details,
        node_id=failure.node_id,
        step_index=failure.step_index,
        attempt=failure.attempt,
    )


def progress_to_proto(progress: Progress) -> common_pb2.RunProgress:
    """What an unfinished run waits for, for the wire."""
    msg = common_pb2.RunProgress(
        reason=int(progress.reason),  # type: ignore[arg-type]
        summary=progress.summary,
        task_queue=progress.task_queue,
        step_index=progress.step_index,
        attempt=progress.attempt,
        worker_id=progress.worker_id,
        signal_name=progress.signal_name,
        pollers=progress.pollers,
        agent_id=progress.agent_id,
    )
    if progress.until is not None:
        msg.until.CopyFrom(_ts(progress.until))
    if progress.last_poll is not None:
        msg.last_poll.CopyFrom(_ts(progress.last_poll))
    if progress.last_failure is not None:
        msg.last_failure.CopyFrom(failure_to_proto(progress.last_failure))
    return msg


def run_to_proto(run: Run, progress: Progress | None = None) -> common_pb2.Run:
    """A run for the wire (with what it waits for, when that is known)."""
    msg = common_pb2.Run(
        run_id=run.run_id,
        graph_id=run.graph_id,
        graph_version=run.graph_version,
        status=int(run.status),  # type: ignore[arg-type]
        input=run.input,
        result=run.result or b"",
        step_count=run.step_count,
        current_node=run.current_node,
        created_at=_ts(run.created_at),
        updated_at=_ts(run.updated_at),
        seed=run.seed,
        parent_run_id=run.parent_run_id,
        forked_from_step=run.forked_from_step,
        cancel_requested=run.cancel_requested,
        namespace=namespace_to_proto(run.namespace),
    )
    if run.waiting is not None:
        wait = run.waiting
        msg.waiting.CopyFrom(common_pb2.Wait(kind=wait.kind, name=wait.name, step_index=wait.step_index, seq=wait.seq))
        if wait.until is not None:
            msg.waiting.until.CopyFrom(_ts(wait.until))
    if run.completed_at is not None:
        msg.completed_at.CopyFrom(_ts(run.completed_at))
    if run.failure is not None:
        msg.failure.CopyFrom(failure_to_proto(run.failure))
    if progress is not None:
        msg.progress.CopyFrom(progress_to_proto(progress))
    return msg


def step_to_proto(step: Step) -> common_pb2.Step:
    """A checkpoint for the wire."""
    return common_pb2.Step(
        run_id=step.run_id,
        step_index=step.step_index,
        node_id=step.node_id,
        attempt=step.attempt,
        state=step.state,
        state_hash=step.state_hash,
        output=step.output,
        next_key=step.next_key,
        next_node=step.next_node,
        logical_time=_ts(step.logical_time),
        started_at=_ts(step.started_at),
        finished_at=_ts(step.finished_at),
        activities=[activity_to_proto(a) for a in step.activities],
    )


def task_to_proto(task: Task, lease: timedelta, tokens: TaskTokens) -> common_pb2.Task:
    """A task for the wire."""
    msg = common_pb2.Task(
        run_id=task.run_id,
        step_index=task.step_index,
        attempt=task.attempt,
        node_id=task.node_id,
        graph_id=task.graph_id,
        graph_version=task.graph_version,
        task_queue=task.task_queue,
        state=task.state,
        logical_time=_ts(task.logical_time),
        seed=task.seed,
        lease_expires_at=_ts(task.lease_expires_at),
        failures=task.failures,
        activities=[activity_to_proto(a) for a in task.activities],
        cancel_requested=task.cancel_requested,
        trace_context=task.trace_context,
        task_token=tokens.encode(task.ref),
    )
    # Set in place: a Namespace message passed to the constructor would be built, then copied.
    msg.namespace.tenant, msg.namespace.project = task.namespace.tenant, task.namespace.project
    msg.lease_duration.FromTimedelta(lease)
    return msg


def artifact_to_proto(artifact: Artifact) -> common_pb2.ArtifactRef:
    """The ref a worker gets for a stored artifact."""
    return common_pb2.ArtifactRef(
        digest=format_digest(artifact.sha256), size=artifact.size, media_type=artifact.media_type
    )
