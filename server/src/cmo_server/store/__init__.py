"""Durable state behind the `Store` protocol (one protocol per concern), with SQLite and Postgres backends."""

from cmo_server.store._offloading import OffloadingStore
from cmo_server.store._protocol import (
    ActivityStore,
    ArtifactStore,
    GraphPage,
    GraphStore,
    MetricsStore,
    ReadyListener,
    RequestStore,
    RetentionStore,
    RunPage,
    RunStore,
    Store,
    TaskStore,
    WaitStore,
)

__all__ = [
    "ActivityStore",
    "RequestStore",
    "ArtifactStore",
    "GraphPage",
    "GraphStore",
    "MetricsStore",
    "OffloadingStore",
    "ReadyListener",
    "RetentionStore",
    "RunPage",
    "RunStore",
    "Store",
    "TaskStore",
    "WaitStore",
]
