import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RunStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_STATUS_UNSPECIFIED: _ClassVar[RunStatus]
    RUN_STATUS_PENDING: _ClassVar[RunStatus]
    RUN_STATUS_RUNNING: _ClassVar[RunStatus]
    RUN_STATUS_WAITING: _ClassVar[RunStatus]
    RUN_STATUS_COMPLETED: _ClassVar[RunStatus]
    RUN_STATUS_FAILED: _ClassVar[RunStatus]
    RUN_STATUS_CANCELLED: _ClassVar[RunStatus]
    RUN_STATUS_TERMINATED: _ClassVar[RunStatus]
RUN_STATUS_UNSPECIFIED: RunStatus
RUN_STATUS_PENDING: RunStatus
RUN_STATUS_RUNNING: RunStatus
RUN_STATUS_WAITING: RunStatus
RUN_STATUS_COMPLETED: RunStatus
RUN_STATUS_FAILED: RunStatus
RUN_STATUS_CANCELLED: RunStatus
RUN_STATUS_TERMINATED: RunStatus

class Namespace(_message.Message):
    __slots__ = ("tenant", "project")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    project: str
    def __init__(self, tenant: _Optional[str] = ..., project: _Optional[str] = ...) -> None: ...

class RetryPolicy(_message.Message):
    __slots__ = ("max_attempts", "initial_interval", "backoff", "max_interval", "non_retryable_errors")
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    INITIAL_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_FIELD_NUMBER: _ClassVar[int]
    MAX_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    NON_RETRYABLE_ERRORS_FIELD_NUMBER: _ClassVar[int]
    max_attempts: int
    initial_interval: _duration_pb2.Duration
    backoff: float
    max_interval: _duration_pb2.Duration
    non_retryable_errors: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, max_attempts: _Optional[int] = ..., initial_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., backoff: _Optional[float] = ..., max_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., non_retryable_errors: _Optional[_Iterable[str]] = ...) -> None: ...

class NodeDef(_message.Message):
    __slots__ = ("node_id", "task_queue", "retry")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_QUEUE_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    task_queue: str
    retry: RetryPolicy
    def __init__(self, node_id: _Optional[str] = ..., task_queue: _Optional[str] = ..., retry: _Optional[_Union[RetryPolicy, _Mapping]] = ...) -> None: ...

class EdgeDef(_message.Message):
    __slots__ = ("from_node", "key", "to_node")
    FROM_NODE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    TO_NODE_FIELD_NUMBER: _ClassVar[int]
    from_node: str
    key: str
    to_node: str
    def __init__(self, from_node: _Optional[str] = ..., key: _Optional[str] = ..., to_node: _Optional[str] = ...) -> None: ...

class GraphDef(_message.Message):
    __slots__ = ("graph_id", "version", "entry_node", "nodes", "edges")
    GRAPH_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ENTRY_NODE_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    graph_id: str
    version: int
    entry_node: str
    nodes: _containers.RepeatedCompositeFieldContainer[NodeDef]
    edges: _containers.RepeatedCompositeFieldContainer[EdgeDef]
    def __init__(self, graph_id: _Optional[str] = ..., version: _Optional[int] = ..., entry_node: _Optional[str] = ..., nodes: _Optional[_Iterable[_Union[NodeDef, _Mapping]]] = ..., edges: _Optional[_Iterable[_Union[EdgeDef, _Mapping]]] = ...) -> None: ...

class GraphRef(_message.Message):
    __slots__ = ("graph_id", "version")
    GRAPH_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    graph_id: str
    version: int
    def __init__(self, graph_id: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class Failure(_message.Message):
    __slots__ = ("message", "type", "non_retryable", "details", "node_id", "step_index", "attempt")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NON_RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_INDEX_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    message: str
    type: str
    non_retryable: bool
    details: str
    node_id: str
    step_index: int
    attempt: int
    def __init__(self, message: _Optional[str] = ..., type: _Optional[str] = ..., non_retryable: _Optional[bool] = ..., details: _Optional[str] = ..., node_id: _Optional[str] = ..., step_index: _Optional[int] = ..., attempt: _Optional[int] = ...) -> None: ...

class Run(_message.Message):
    __slots__ = ("run_id", "graph_id", "graph_version", "status", "input", "result", "failure", "step_count", "current_node", "created_at", "updated_at", "completed_at", "seed", "parent_run_id", "forked_from_step", "waiting", "cancel_requested", "namespace", "progress")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    GRAPH_ID_FIELD_NUMBER: _ClassVar[int]
    GRAPH_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    STEP_COUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENT_NODE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PARENT_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    FORKED_FROM_STEP_FIELD_NUMBER: _ClassVar[int]
    WAITING_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    graph_id: str
    graph_version: int
    status: RunStatus
    input: bytes
    result: bytes
    failure: Failure
    step_count: int
    current_node: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    completed_at: _timestamp_pb2.Timestamp
    seed: int
    parent_run_id: str
    forked_from_step: int
    waiting: Wait
    cancel_requested: bool
    namespace: Namespace
    progress: RunProgress
    def __init__(self, run_id: _Optional[str] = ..., graph_id: _Optional[str] = ..., graph_version: _Optional[int] = ..., status: _Optional[_Union[RunStatus, str]] = ..., input: _Optional[bytes] = ..., result: _Optional[bytes] = ..., failure: _Optional[_Union[Failure, _Mapping]] = ..., step_count: _Optional[int] = ..., current_node: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., seed: _Optional[int] = ..., parent_run_id: _Optional[str] = ..., forked_from_step: _Optional[int] = ..., waiting: _Optional[_Union[Wait, _Mapping]] = ..., cancel_requested: _Optional[bool] = ..., namespace: _Optional[_Union[Namespace, _Mapping]] = ..., progress: _Optional[_Union[RunProgress, _Mapping]] = ...) -> None: ...

class RunProgress(_message.Message):
    __slots__ = ("reason", "summary", "task_queue", "step_index", "attempt", "worker_id", "until", "last_poll", "last_failure", "signal_name", "pollers", "agent_id")
    class Reason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        REASON_UNSPECIFIED: _ClassVar[RunProgress.Reason]
        NO_POLLER: _ClassVar[RunProgress.Reason]
        READY: _ClassVar[RunProgress.Reason]
        LEASED: _ClassVar[RunProgress.Reason]
        RETRY_AT: _ClassVar[RunProgress.Reason]
        SIGNAL: _ClassVar[RunProgress.Reason]
        TIMER: _ClassVar[RunProgress.Reason]
        SPECIALIST: _ClassVar[RunProgress.Reason]
        CANCEL_REQUESTED: _ClassVar[RunProgress.Reason]
    REASON_UNSPECIFIED: RunProgress.Reason
    NO_POLLER: RunProgress.Reason
    READY: RunProgress.Reason
    LEASED: RunProgress.Reason
    RETRY_AT: RunProgress.Reason
    SIGNAL: RunProgress.Reason
    TIMER: RunProgress.Reason
    SPECIALIST: RunProgress.Reason
    CANCEL_REQUESTED: RunProgress.Reason
    REASON_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    TASK_QUEUE_FIELD_NUMBER: _ClassVar[int]
    STEP_INDEX_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    LAST_POLL_FIELD_NUMBER: _ClassVar[int]
    LAST_FAILURE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_NAME_FIELD_NUMBER: _ClassVar[int]
    POLLERS_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    reason: RunProgress.Reason
    summary: str
    task_queue: str
    step_index: int
    attempt: int
    worker_id: str
    until: _timestamp_pb2.Timestamp
    last_poll: _timestamp_pb2.Timestamp
    last_failure: Failure
    signal_name: str
    pollers: int
    agent_id: str
    def __init__(self, reason: _Optional[_Union[RunProgress.Reason, str]] = ..., summary: _Optional[str] = ..., task_queue: _Optional[str] = ..., step_index: _Optional[int] = ..., attempt: _Optional[int] = ..., worker_id: _Optional[str] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_poll: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_failure: _Optional[_Union[Failure, _Mapping]] = ..., signal_name: _Optional[str] = ..., pollers: _Optional[int] = ..., agent_id: _Optional[str] = ...) -> None: ...

class Wait(_message.Message):
    __slots__ = ("kind", "name", "until", "step_index", "seq")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    STEP_INDEX_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    kind: str
    name: str
    until: _timestamp_pb2.Timestamp
    step_index: int
    seq: int
    def __init__(self, kind: _Optional[str] = ..., name: _Optional[str] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., step_index: _Optional[int] = ..., seq: _Optional[int] = ...) -> None: ...

class Step(_message.Message):
    __slots__ = ("run_id", "step_index", "node_id", "attempt", "state", "state_hash", "output", "next_key", "next_node", "logical_time", "started_at", "finished_at", "activities")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_INDEX_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATE_HASH_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    NEXT_KEY_FIELD_NUMBER: _ClassVar[int]
    NEXT_NODE_FIELD_NUMBER: _ClassVar[int]
    LOGICAL_TIME_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    ACTIVITIES_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    step_index: int
    node_id: str
    attempt: int
    state: bytes
    state_hash: str
    output: bytes
    next_key: str
    next_node: str
    logical_time: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    activities: _containers.RepeatedCompositeFieldContainer[Activity]
    def __init__(self, run_id: _Optional[str] = ..., step_index: _Optional[int] = ..., node_id: _Optional[str] = ..., attempt: _Optional[int] = ..., state: _Optional[bytes] = ..., state_hash: _Optional[str] = ..., output: _Optional[bytes] = ..., next_key: _Optional[str] = ..., next_node: _Optional[str] = ..., logical_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., activities: _Optional[_Iterable[_Union[Activity, _Mapping]]] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("run_id", "step_index", "attempt", "node_id", "graph_id", "graph_version", "task_queue", "state", "logical_time", "seed", "lease_expires_at", "lease_duration", "failures", "activities", "cancel_requested", "trace_context", "task_token", "namespace")
    class TraceContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_INDEX_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    GRAPH_ID_FIELD_NUMBER: _ClassVar[int]
    GRAPH_VERSION_FIELD_NUMBER: _ClassVar[int]
    TASK_QUEUE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LOGICAL_TIME_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    LEASE_DURATION_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    ACTIVITIES_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    TRACE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    TASK_TOKEN_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    step_index: int
    attempt: int
    node_id: str
    graph_id: str
    graph_version: int
    task_queue: str
    state: bytes
    logical_time: _timestamp_pb2.Timestamp
    seed: int
    lease_expires_at: _timestamp_pb2.Timestamp
    lease_duration: _duration_pb2.Duration
    failures: int
    activities: _containers.RepeatedCompositeFieldContainer[Activity]
    cancel_requested: bool
    trace_context: _containers.ScalarMap[str, str]
    task_token: str
    namespace: Namespace
    def __init__(self, run_id: _Optional[str] = ..., step_index: _Optional[int] = ..., attempt: _Optional[int] = ..., node_id: _Optional[str] = ..., graph_id: _Optional[str] = ..., graph_version: _Optional[int] = ..., task_queue: _Optional[str] = ..., state: _Optional[bytes] = ..., logical_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., seed: _Optional[int] = ..., lease_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., lease_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., failures: _Optional[int] = ..., activities: _Optional[_Iterable[_Union[Activity, _Mapping]]] = ..., cancel_requested: _Optional[bool] = ..., trace_context: _Optional[_Mapping[str, str]] = ..., task_token: _Optional[str] = ..., namespace: _Optional[_Union[Namespace, _Mapping]] = ...) -> None: ...

class Activity(_message.Message):
    __slots__ = ("seq", "kind", "name", "request_hash", "result", "error", "attempt", "recorded_at", "duration")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_HASH_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    RECORDED_AT_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    seq: int
    kind: str
    name: str
    request_hash: str
    result: bytes
    error: Failure
    attempt: int
    recorded_at: _timestamp_pb2.Timestamp
    duration: _duration_pb2.Duration
    def __init__(self, seq: _Optional[int] = ..., kind: _Optional[str] = ..., name: _Optional[str] = ..., request_hash: _Optional[str] = ..., result: _Optional[bytes] = ..., error: _Optional[_Union[Failure, _Mapping]] = ..., attempt: _Optional[int] = ..., recorded_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ArtifactRef(_message.Message):
    __slots__ = ("digest", "size", "media_type")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    digest: str
    size: int
    media_type: str
    def __init__(self, digest: _Optional[str] = ..., size: _Optional[int] = ..., media_type: _Optional[str] = ...) -> None: ...
