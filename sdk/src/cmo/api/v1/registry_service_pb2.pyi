import datetime

from cmo.api.v1 import common_pb2 as _common_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AgentStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGENT_STATUS_UNSPECIFIED: _ClassVar[AgentStatus]
    AGENT_STATUS_STARTING: _ClassVar[AgentStatus]
    AGENT_STATUS_HEALTHY: _ClassVar[AgentStatus]
    AGENT_STATUS_DEGRADED: _ClassVar[AgentStatus]
    AGENT_STATUS_UNAVAILABLE: _ClassVar[AgentStatus]

class TopicRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TOPIC_ROLE_UNSPECIFIED: _ClassVar[TopicRole]
    TOPIC_ROLE_PUBLISH: _ClassVar[TopicRole]
    TOPIC_ROLE_SUBSCRIBE: _ClassVar[TopicRole]
AGENT_STATUS_UNSPECIFIED: AgentStatus
AGENT_STATUS_STARTING: AgentStatus
AGENT_STATUS_HEALTHY: AgentStatus
AGENT_STATUS_DEGRADED: AgentStatus
AGENT_STATUS_UNAVAILABLE: AgentStatus
TOPIC_ROLE_UNSPECIFIED: TopicRole
TOPIC_ROLE_PUBLISH: TopicRole
TOPIC_ROLE_SUBSCRIBE: TopicRole

class AgentTopic(_message.Message):
    __slots__ = ("topic", "role")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    topic: str
    role: TopicRole
    def __init__(self, topic: _Optional[str] = ..., role: _Optional[_Union[TopicRole, str]] = ...) -> None: ...

class Agent(_message.Message):
    __slots__ = ("namespace", "agent_id", "kind", "name", "version", "capabilities", "topics", "metadata", "status", "status_reason", "load", "lease", "lease_expires_at", "registered_at", "last_heartbeat_at", "last_poll_at", "revision")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STATUS_REASON_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_POLL_AT_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    namespace: _common_pb2.Namespace
    agent_id: str
    kind: str
    name: str
    version: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    topics: _containers.RepeatedCompositeFieldContainer[AgentTopic]
    metadata: _containers.ScalarMap[str, str]
    status: AgentStatus
    status_reason: str
    load: float
    lease: _duration_pb2.Duration
    lease_expires_at: _timestamp_pb2.Timestamp
    registered_at: _timestamp_pb2.Timestamp
    last_heartbeat_at: _timestamp_pb2.Timestamp
    last_poll_at: _timestamp_pb2.Timestamp
    revision: int
    def __init__(self, namespace: _Optional[_Union[_common_pb2.Namespace, _Mapping]] = ..., agent_id: _Optional[str] = ..., kind: _Optional[str] = ..., name: _Optional[str] = ..., version: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ..., topics: _Optional[_Iterable[_Union[AgentTopic, _Mapping]]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., status: _Optional[_Union[AgentStatus, str]] = ..., status_reason: _Optional[str] = ..., load: _Optional[float] = ..., lease: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., lease_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., registered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_heartbeat_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_poll_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revision: _Optional[int] = ...) -> None: ...

class RegisterAgentRequest(_message.Message):
    __slots__ = ("agent_id", "kind", "name", "version", "capabilities", "topics", "metadata", "lease", "status", "namespace")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    kind: str
    name: str
    version: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    topics: _containers.RepeatedCompositeFieldContainer[AgentTopic]
    metadata: _containers.ScalarMap[str, str]
    lease: _duration_pb2.Duration
    status: AgentStatus
    namespace: _common_pb2.Namespace
    def __init__(self, agent_id: _Optional[str] = ..., kind: _Optional[str] = ..., name: _Optional[str] = ..., version: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ..., topics: _Optional[_Iterable[_Union[AgentTopic, _Mapping]]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., lease: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., status: _Optional[_Union[AgentStatus, str]] = ..., namespace: _Optional[_Union[_common_pb2.Namespace, _Mapping]] = ...) -> None: ...

class RegisterAgentResponse(_message.Message):
    __slots__ = ("agent", "lease_id")
    AGENT_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    agent: Agent
    lease_id: str
    def __init__(self, agent: _Optional[_Union[Agent, _Mapping]] = ..., lease_id: _Optional[str] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("agent_id", "lease_id", "status", "load", "namespace")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    lease_id: str
    status: AgentStatus
    load: float
    namespace: _common_pb2.Namespace
    def __init__(self, agent_id: _Optional[str] = ..., lease_id: _Optional[str] = ..., status: _Optional[_Union[AgentStatus, str]] = ..., load: _Optional[float] = ..., namespace: _Optional[_Union[_common_pb2.Namespace, _Mapping]] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("lease_expires_at", "status")
    LEASE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    lease_expires_at: _timestamp_pb2.Timestamp
    status: AgentStatus
    def __init__(self, lease_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status: _Optional[_Union[AgentStatus, str]] = ...) -> None: ...

class DeregisterRequest(_message.Message):
    __slots__ = ("agent_id", "lease_id", "reason", "namespace")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    lease_id: str
    reason: str
    namespace: _common_pb2.Namespace
    def __init__(self, agent_id: _Optional[str] = ..., lease_id: _Optional[str] = ..., reason: _Optional[str] = ..., namespace: _Optional[_Union[_common_pb2.Namespace, _Mapping]] = ...) -> None: ...

class DeregisterResponse(_message.Message):
    __slots__ = ("agent",)
    AGENT_FIELD_NUMBER: _ClassVar[int]
    agent: Agent
    def __init__(self, agent: _Optional[_Union[Agent, _Mapping]] = ...) -> None: ...

class GetAgentRequest(_message.Message):
    __slots__ = ("agent_id", "namespace")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    namespace: _common_pb2.Namespace
    def __init__(self, agent_id: _Optional[str] = ..., namespace: _Optional[_Union[_common_pb2.Namespace, _Mapping]] = ...) -> None: ...

class GetAgentResponse(_message.Message):
    __slots__ = ("agent",)
    AGENT_FIELD_NUMBER: _ClassVar[int]
    agent: Agent
    def __init__(self, agent: _Optional[_Union[Agent, _Mapping]] = ...) -> None: ...

class ListAgentsRequest(_message.Message):
    __slots__ = ("statuses", "kind", "capability", "page_size", "page_token", "namespace")
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    statuses: _containers.RepeatedScalarFieldContainer[AgentStatus]
    kind: str
    capability: str
    page_size: int
    page_token: str
    namespace: _common_pb2.Namespace
    def __init__(self, statuses: _Optional[_Iterable[_Union[AgentStatus, str]]] = ..., kind: _Optional[str] = ..., capability: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., namespace: _Optional[_Union[_common_pb2.Namespace, _Mapping]] = ...) -> None: ...

class ListAgentsResponse(_message.Message):
    __slots__ = ("agents", "next_page_token")
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedCompositeFieldContainer[Agent]
    next_page_token: str
    def __init__(self, agents: _Optional[_Iterable[_Union[Agent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DiscoverRequest(_message.Message):
    __slots__ = ("capability", "statuses", "version", "kind", "limit", "namespace")
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    capability: str
    statuses: _containers.RepeatedScalarFieldContainer[AgentStatus]
    version: str
    kind: str
    limit: int
    namespace: _common_pb2.Namespace
    def __init__(self, capability: _Optional[str] = ..., statuses: _Optional[_Iterable[_Union[AgentStatus, str]]] = ..., version: _Optional[str] = ..., kind: _Optional[str] = ..., limit: _Optional[int] = ..., namespace: _Optional[_Union[_common_pb2.Namespace, _Mapping]] = ...) -> None: ...

class DiscoverResponse(_message.Message):
    __slots__ = ("agents",)
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedCompositeFieldContainer[Agent]
    def __init__(self, agents: _Optional[_Iterable[_Union[Agent, _Mapping]]] = ...) -> None: ...

class WatchAgentsRequest(_message.Message):
    __slots__ = ("skip_current", "namespace")
    SKIP_CURRENT_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    skip_current: bool
    namespace: _common_pb2.Namespace
    def __init__(self, skip_current: _Optional[bool] = ..., namespace: _Optional[_Union[_common_pb2.Namespace, _Mapping]] = ...) -> None: ...

class WatchAgentsResponse(_message.Message):
    __slots__ = ("kind", "agent")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[WatchAgentsResponse.Kind]
        KIND_CURRENT: _ClassVar[WatchAgentsResponse.Kind]
        KIND_SYNCED: _ClassVar[WatchAgentsResponse.Kind]
        KIND_CHANGED: _ClassVar[WatchAgentsResponse.Kind]
    KIND_UNSPECIFIED: WatchAgentsResponse.Kind
    KIND_CURRENT: WatchAgentsResponse.Kind
    KIND_SYNCED: WatchAgentsResponse.Kind
    KIND_CHANGED: WatchAgentsResponse.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    kind: WatchAgentsResponse.Kind
    agent: Agent
    def __init__(self, kind: _Optional[_Union[WatchAgentsResponse.Kind, str]] = ..., agent: _Optional[_Union[Agent, _Mapping]] = ...) -> None: ...
