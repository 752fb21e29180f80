import datetime

from cmo.api.v1 import common_pb2 as _common_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RegisterGraphRequest(_message.Message):
    __slots__ = ("graph", "namespace")
    GRAPH_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    graph: _common_pb2.GraphDef
    namespace: _common_pb2.Namespace
    def __init__(self, graph: _Optional[_Union[_common_pb2.GraphDef, _Mapping]] = ..., namespace: _Optional[_Union[_common_pb2.Namespace, _Mapping]] = ...) -> None: ...

class RegisterGraphResponse(_message.Message):
    __slots__ = ("created",)
    CREATED_FIELD_NUMBER: _ClassVar[int]
    created: bool
    def __init__(self, created: _Optional[bool] = ...) -> None: ...

class GetGraphRequest(_message.Message):
    __slots__ = ("graph_id", "version", "namespace")
    GRAPH_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    graph_id: str
    version: int
    namespace: _common_pb2.Namespace
    def __init__(self, graph_id: _Optional[str] = ..., version: _Optional[int] = ..., namespace: _Optional[_Union[_common_pb2.Namespace, _Mapping]] = ...) -> None: ...

class GetGraphResponse(_message.Message):
    __slots__ = ("graph",)
    GRAPH_FIELD_NUMBER: _ClassVar[int]
    graph: _common_pb2.GraphDef
    def __init__(self, graph: _Optional[_Union[_common_pb2.GraphDef, _Mapping]] = ...) -> None: ...

class ListGraphsRequest(_message.Message):
    __slots__ = ("graph_id", "page_size", "page_token", "namespace")
    GRAPH_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    graph_id: str
    page_size: int
    page_token: str
    namespace: _common_pb2.Namespace
    def __init__(self, graph_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., namespace: _Optional[_Union[_common_pb2.Namespace, _Mapping]] = ...) -> None: ...

class ListGraphsResponse(_message.Message):
    __slots__ = ("graphs", "next_page_token")
    GRAPHS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    graphs: _containers.RepeatedCompositeFieldContainer[_common_pb2.GraphDef]
    next_page_token: str
    def __init__(self, graphs: _Optional[_Iterable[_Union[_common_pb2.GraphDef, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class PollTaskRequest(_message.Message):
    __slots__ = ("worker_id", "task_queues", "graphs", "wait", "namespace")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_QUEUES_FIELD_NUMBER: _ClassVar[int]
    GRAPHS_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    task_queues: _containers.RepeatedScalarFieldContainer[str]
    graphs: _containers.RepeatedCompositeFieldContainer[_common_pb2.GraphRef]
    wait: _duration_pb2.Duration
    namespace: _common_pb2.Namespace
    def __init__(self, worker_id: _Optional[str] = ..., task_queues: _Optional[_Iterable[str]] = ..., graphs: _Optional[_Iterable[_Union[_common_pb2.GraphRef, _Mapping]]] = ..., wait: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., namespace: _Optional[_Union[_common_pb2.Namespace, _Mapping]] = ...) -> None: ...

class PollTaskResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: _common_pb2.Task
    def __init__(self, task: _Optional[_Union[_common_pb2.Task, _Mapping]] = ...) -> None: ...

class RecordActivityRequest(_message.Message):
    __slots__ = ("worker_id", "task_token", "activity")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ACTIVITY_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    task_token: str
    activity: _common_pb2.Activity
    def __init__(self, worker_id: _Optional[str] = ..., task_token: _Optional[str] = ..., activity: _Optional[_Union[_common_pb2.Activity, _Mapping]] = ...) -> None: ...

class RecordActivityResponse(_message.Message):
    __slots__ = ("activity",)
    ACTIVITY_FIELD_NUMBER: _ClassVar[int]
    activity: _common_pb2.Activity
    def __init__(self, activity: _Optional[_Union[_common_pb2.Activity, _Mapping]] = ...) -> None: ...

class HeartbeatTaskRequest(_message.Message):
    __slots__ = ("worker_id", "task_token")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_TOKEN_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    task_token: str
    def __init__(self, worker_id: _Optional[str] = ..., task_token: _Optional[str] = ...) -> None: ...

class HeartbeatTaskResponse(_message.Message):
    __slots__ = ("lease_expires_at", "cancel_requested")
    LEASE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    lease_expires_at: _timestamp_pb2.Timestamp
    cancel_requested: bool
    def __init__(self, lease_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cancel_requested: _Optional[bool] = ...) -> None: ...

class CompleteTaskRequest(_message.Message):
    __slots__ = ("worker_id", "task_token", "state", "output", "next_key", "started_at", "eager_task_queues", "activities")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    NEXT_KEY_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    EAGER_TASK_QUEUES_FIELD_NUMBER: _ClassVar[int]
    ACTIVITIES_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    task_token: str
    state: bytes
    output: bytes
    next_key: str
    started_at: _timestamp_pb2.Timestamp
    eager_task_queues: _containers.RepeatedScalarFieldContainer[str]
    activities: _containers.RepeatedCompositeFieldContainer[_common_pb2.Activity]
    def __init__(self, worker_id: _Optional[str] = ..., task_token: _Optional[str] = ..., state: _Optional[bytes] = ..., output: _Optional[bytes] = ..., next_key: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., eager_task_queues: _Optional[_Iterable[str]] = ..., activities: _Optional[_Iterable[_Union[_common_pb2.Activity, _Mapping]]] = ...) -> None: ...

class CompleteTaskResponse(_message.Message):
    __slots__ = ("next_task", "run_status")
    NEXT_TASK_FIELD_NUMBER: _ClassVar[int]
    RUN_STATUS_FIELD_NUMBER: _ClassVar[int]
    next_task: _common_pb2.Task
    run_status: _common_pb2.RunStatus
    def __init__(self, next_task: _Optional[_Union[_common_pb2.Task, _Mapping]] = ..., run_status: _Optional[_Union[_common_pb2.RunStatus, str]] = ...) -> None: ...

class FailTaskRequest(_message.Message):
    __slots__ = ("worker_id", "task_token", "failure", "release", "cancelled", "activities")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    ACTIVITIES_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    task_token: str
    failure: _common_pb2.Failure
    release: bool
    cancelled: bool
    activities: _containers.RepeatedCompositeFieldContainer[_common_pb2.Activity]
    def __init__(self, worker_id: _Optional[str] = ..., task_token: _Optional[str] = ..., failure: _Optional[_Union[_common_pb2.Failure, _Mapping]] = ..., release: _Optional[bool] = ..., cancelled: _Optional[bool] = ..., activities: _Optional[_Iterable[_Union[_common_pb2.Activity, _Mapping]]] = ...) -> None: ...

class FailTaskResponse(_message.Message):
    __slots__ = ("will_retry", "retry_after", "run_status")
    WILL_RETRY_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    RUN_STATUS_FIELD_NUMBER: _ClassVar[int]
    will_retry: bool
    retry_after: _duration_pb2.Duration
    run_status: _common_pb2.RunStatus
    def __init__(self, will_retry: _Optional[bool] = ..., retry_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., run_status: _Optional[_Union[_common_pb2.RunStatus, str]] = ...) -> None: ...

class SuspendTaskRequest(_message.Message):
    __slots__ = ("worker_id", "task_token", "wait", "activities")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_TOKEN_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    ACTIVITIES_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    task_token: str
    wait: WaitRequest
    activities: _containers.RepeatedCompositeFieldContainer[_common_pb2.Activity]
    def __init__(self, worker_id: _Optional[str] = ..., task_token: _Optional[str] = ..., wait: _Optional[_Union[WaitRequest, _Mapping]] = ..., activities: _Optional[_Iterable[_Union[_common_pb2.Activity, _Mapping]]] = ...) -> None: ...

class WaitRequest(_message.Message):
    __slots__ = ("seq", "kind", "name", "duration", "request_hash")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_HASH_FIELD_NUMBER: _ClassVar[int]
    seq: int
    kind: str
    name: str
    duration: _duration_pb2.Duration
    request_hash: str
    def __init__(self, seq: _Optional[int] = ..., kind: _Optional[str] = ..., name: _Optional[str] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., request_hash: _Optional[str] = ...) -> None: ...

class SuspendTaskResponse(_message.Message):
    __slots__ = ("resumed",)
    RESUMED_FIELD_NUMBER: _ClassVar[int]
    resumed: bool
    def __init__(self, resumed: _Optional[bool] = ...) -> None: ...

class PutArtifactRequest(_message.Message):
    __slots__ = ("run_id", "media_type", "chunk", "namespace")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    media_type: str
    chunk: bytes
    namespace: _common_pb2.Namespace
    def __init__(self, run_id: _Optional[str] = ..., media_type: _Optional[str] = ..., chunk: _Optional[bytes] = ..., namespace: _Optional[_Union[_common_pb2.Namespace, _Mapping]] = ...) -> None: ...

class PutArtifactResponse(_message.Message):
    __slots__ = ("artifact",)
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    artifact: _common_pb2.ArtifactRef
    def __init__(self, artifact: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ...) -> None: ...

class GetArtifactRequest(_message.Message):
    __slots__ = ("digest", "namespace")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    digest: str
    namespace: _common_pb2.Namespace
    def __init__(self, digest: _Optional[str] = ..., namespace: _Optional[_Union[_common_pb2.Namespace, _Mapping]] = ...) -> None: ...

class GetArtifactResponse(_message.Message):
    __slots__ = ("chunk",)
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    def __init__(self, chunk: _Optional[bytes] = ...) -> None: ...

class SessionRequest(_message.Message):
    __slots__ = ("call_id", "poll_task", "record_activity", "heartbeat_task", "complete_task", "fail_task", "suspend_task", "cancel", "trace_context")
    class TraceContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    POLL_TASK_FIELD_NUMBER: _ClassVar[int]
    RECORD_ACTIVITY_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_TASK_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_TASK_FIELD_NUMBER: _ClassVar[int]
    FAIL_TASK_FIELD_NUMBER: _ClassVar[int]
    SUSPEND_TASK_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    TRACE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    call_id: int
    poll_task: PollTaskRequest
    record_activity: RecordActivityRequest
    heartbeat_task: HeartbeatTaskRequest
    complete_task: CompleteTaskRequest
    fail_task: FailTaskRequest
    suspend_task: SuspendTaskRequest
    cancel: CancelCall
    trace_context: _containers.ScalarMap[str, str]
    def __init__(self, call_id: _Optional[int] = ..., poll_task: _Optional[_Union[PollTaskRequest, _Mapping]] = ..., record_activity: _Optional[_Union[RecordActivityRequest, _Mapping]] = ..., heartbeat_task: _Optional[_Union[HeartbeatTaskRequest, _Mapping]] = ..., complete_task: _Optional[_Union[CompleteTaskRequest, _Mapping]] = ..., fail_task: _Optional[_Union[FailTaskRequest, _Mapping]] = ..., suspend_task: _Optional[_Union[SuspendTaskRequest, _Mapping]] = ..., cancel: _Optional[_Union[CancelCall, _Mapping]] = ..., trace_context: _Optional[_Mapping[str, str]] = ...) -> None: ...

class CancelCall(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SessionResponse(_message.Message):
    __slots__ = ("call_id", "error", "poll_task", "record_activity", "heartbeat_task", "complete_task", "fail_task", "suspend_task", "cancel_requested")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    POLL_TASK_FIELD_NUMBER: _ClassVar[int]
    RECORD_ACTIVITY_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_TASK_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_TASK_FIELD_NUMBER: _ClassVar[int]
    FAIL_TASK_FIELD_NUMBER: _ClassVar[int]
    SUSPEND_TASK_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    call_id: int
    error: CallError
    poll_task: PollTaskResponse
    record_activity: RecordActivityResponse
    heartbeat_task: HeartbeatTaskResponse
    complete_task: CompleteTaskResponse
    fail_task: FailTaskResponse
    suspend_task: SuspendTaskResponse
    cancel_requested: CancelRequested
    def __init__(self, call_id: _Optional[int] = ..., error: _Optional[_Union[CallError, _Mapping]] = ..., poll_task: _Optional[_Union[PollTaskResponse, _Mapping]] = ..., record_activity: _Optional[_Union[RecordActivityResponse, _Mapping]] = ..., heartbeat_task: _Optional[_Union[HeartbeatTaskResponse, _Mapping]] = ..., complete_task: _Optional[_Union[CompleteTaskResponse, _Mapping]] = ..., fail_task: _Optional[_Union[FailTaskResponse, _Mapping]] = ..., suspend_task: _Optional[_Union[SuspendTaskResponse, _Mapping]] = ..., cancel_requested: _Optional[_Union[CancelRequested, _Mapping]] = ...) -> None: ...

class CallError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class CancelRequested(_message.Message):
    __slots__ = ("task_token",)
    TASK_TOKEN_FIELD_NUMBER: _ClassVar[int]
    task_token: str
    def __init__(self, task_token: _Optional[str] = ...) -> None: ...
