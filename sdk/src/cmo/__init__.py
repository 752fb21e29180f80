"""Durable, checkpointed graph workflows: write nodes, run workers, start runs."""

from cmo import errors
from cmo._activity import Activity, ActivityInfo, activity, activity_info
from cmo._artifacts import ArtifactRef
from cmo._client import Client, RunHandle
from cmo._graph import END, Graph, NodeContext, NodeResult
from cmo._http import HttpResponse
from cmo._mcp import McpServer, McpToolResult
from cmo._retry import RetryPolicy
from cmo._tls import TLSConfig
from cmo._types import FailureInfo, PruneReport, RunInfo, RunProgress, RunStatus, StepInfo, WaitInfo
from cmo._version import __version__
from cmo._worker import Worker

__all__ = [
    "END",
    "Activity",
    "ActivityInfo",
    "ArtifactRef",
    "Client",
    "FailureInfo",
    "Graph",
    "HttpResponse",
    "McpServer",
    "McpToolResult",
    "NodeContext",
    "NodeResult",
    "PruneReport",
    "RetryPolicy",
    "RunHandle",
    "RunInfo",
    "RunProgress",
    "RunStatus",
    "StepInfo",
    "TLSConfig",
    "WaitInfo",
    "Worker",
    "__version__",
    "activity",
    "activity_info",
    "errors",
]
