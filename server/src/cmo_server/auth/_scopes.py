"""The scope each RPC needs.

Every method of the product's services is listed: one that is not is refused
(tests/unit/test_auth.py checks the list against the protos).
"""

from __future__ import annotations

__all__ = ["METRICS_SCOPE", "PUBLIC_SERVICES", "SCOPES", "scope_of"]

READ, WRITE, ADMIN = "runs:read", "runs:write", "runs:admin"
WORKERS = "workers"
REGISTRY_READ, REGISTRY_WRITE = "registry:read", "registry:write"
METRICS_SCOPE = "metrics"
"""What a scrape of /metrics needs, with authentication on (the probes need nothing)."""

SCOPES: dict[str, str] = {
    "/cmo.api.v1.RunService/StartRun": WRITE,
    "/cmo.api.v1.RunService/GetRun": READ,
    "/cmo.api.v1.RunService/ListRuns": READ,
    "/cmo.api.v1.RunService/WaitRun": READ,
    "/cmo.api.v1.RunService/GetHistory": READ,
    "/cmo.api.v1.RunService/ForkRun": WRITE,
    "/cmo.api.v1.RunService/SignalRun": WRITE,
    "/cmo.api.v1.RunService/CancelRun": WRITE,
    "/cmo.api.v1.RunService/TerminateRun": ADMIN,
    "/cmo.api.v1.RunService/PruneRuns": ADMIN,
    "/cmo.api.v1.WorkerService/RegisterGraph": WORKERS,
    "/cmo.api.v1.WorkerService/GetGraph": WORKERS,
    "/cmo.api.v1.WorkerService/ListGraphs": WORKERS,
    "/cmo.api.v1.WorkerService/PollTask": WORKERS,
    "/cmo.api.v1.WorkerService/RecordActivity": WORKERS,
    "/cmo.api.v1.WorkerService/HeartbeatTask": WORKERS,
    "/cmo.api.v1.WorkerService/CompleteTask": WORKERS,
    "/cmo.api.v1.WorkerService/FailTask": WORKERS,
    "/cmo.api.v1.WorkerService/SuspendTask": WORKERS,
    "/cmo.api.v1.WorkerService/PutArtifact": WORKERS,
    "/cmo.api.v1.WorkerService/GetArtifact": WORKERS,
    "/cmo.api.v1.WorkerService/Session": WORKERS,
    "/cmo.api.v1.RegistryService/RegisterAgent": REGISTRY_WRITE,
    "/cmo.api.v1.RegistryService/Heartbeat": REGISTRY_WRITE,
    "/cmo.api.v1.RegistryService/Deregister": REGISTRY_WRITE,
    "/cmo.api.v1.RegistryService/GetAgent": REGISTRY_READ,
    "/cmo.api.v1.RegistryService/ListAgents": REGISTRY_READ,
    "/cmo.api.v1.RegistryService/Discover": REGISTRY_READ,
    "/cmo.api.v1.RegistryService/WatchAgents": REGISTRY_READ,
}

PUBLIC_SERVICES = frozenset({"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"})
"""Answered without credentials: health checks (load balancers) and reflection (tools)."""


def scope_of(method: str) -> str | None:
    """The scope `method` (`/package.Service/Method`) needs; "" for a public one; None if unknown."""
    service = method.lstrip("/").partition("/")[0]
    if service in PUBLIC_SERVICES:
        return ""
    return SCOPES.get(method)
