"""Registered graph versions as the server applies them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from cmo.serialization import canonical_json
from cmo_server.domain._namespaces import DEFAULT_NAMESPACE, Namespace
from cmo_server.errors import shown

__all__ = ["END_NODE", "GraphSpec", "MAX_RETRY_DELAY", "NodeSpec", "RetrySpec", "graph_key", "split_graph_key"]


END_NODE = "__end__"
"""The node id (and edge key) that finishes a run."""

MAX_RETRY_DELAY = timedelta(days=365)
"""Longest back-off before a retry: an unbounded policy would outgrow what a timestamp holds."""


def graph_key(namespace: Namespace, graph_id: str, version: int) -> str:
    """One string naming a graph version in its namespace, as task claims filter on it.

    Claims and wake-ups match on (task queue, graph key), so a poller never sees another
    namespace's tasks, though queue names repeat across namespaces.
    """
    return f"{namespace}/{graph_id}@{version}"


def split_graph_key(key: str) -> tuple[Namespace, str, int]:
    """(namespace, graph_id, version) of a `graph_key`."""
    tenant, project, rest = key.split("/", 2)
    graph_id, _, version = rest.rpartition("@")
    return Namespace(tenant, project), graph_id, int(version)


@dataclass(frozen=True, slots=True)
class RetrySpec:
    """A node's retry policy as the server applies it."""

    max_attempts: int = 3
    initial_interval: timedelta = timedelta(seconds=1)
    backoff: float = 2.0
    max_interval: timedelta | None = None
    non_retryable_errors: tuple[str, ...] = ()

    def delay_after(self, failures: int) -> timedelta:
        """The wait before the attempt that follows `failures` failed ones."""
        cap = MAX_RETRY_DELAY if self.max_interval is None else min(self.max_interval, MAX_RETRY_DELAY)
        try:
            return min(self.initial_interval * (self.backoff ** max(failures - 1, 0)), cap)
        except OverflowError:
            return cap

    def allows_another(self, failures: int, error_type: str, *, non_retryable: bool) -> bool:
        """Whether a step that has failed `failures` times may be tried again."""
        if non_retryable or error_type in self.non_retryable_errors:
            return False
        return self.max_attempts == 0 or failures < self.max_attempts


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One node of a registered graph."""

    node_id: str
    task_queue: str = "default"
    retry: RetrySpec = field(default_factory=RetrySpec)


@dataclass(frozen=True, slots=True)
class GraphSpec:
    """A registered, immutable graph version."""

    graph_id: str
    version: int
    entry_node: str
    nodes: dict[str, NodeSpec]
    edges: dict[tuple[str, str], str]
    """(from_node, key) -> to_node."""
    namespace: Namespace = DEFAULT_NAMESPACE

    @property
    def key(self) -> str:
        """The graph version's claim-filter key."""
        return graph_key(self.namespace, self.graph_id, self.version)

    def next_node(self, from_node: str, key: str) -> str | None:
        """The node an edge key leads to (END_NODE finishes), or None when no edge matches."""
        if key == END_NODE:
            return END_NODE
        return self.edges.get((from_node, key))

    def definition_json(self) -> bytes:
        """Canonical JSON of the definition: equal graphs give equal bytes."""
        return canonical_json(self.to_json())

    def to_json(self) -> dict[str, Any]:
        """The definition as a JSON-shaped dict (stored in the graph registry)."""
        return {
            "graph_id": self.graph_id,
            "version": self.version,
            "entry_node": self.entry_node,
            "nodes": [
                {
                    "node_id": n.node_id,
                    "task_queue": n.task_queue,
                    "retry": {
                        "max_attempts": n.retry.max_attempts,
                        "initial_interval_s": n.retry.initial_interval.total_seconds(),
                        "backoff": n.retry.backoff,
                        "max_interval_s": (
                            None if n.retry.max_interval is None else n.retry.max_interval.total_seconds()
                        ),
                        "non_retryable_errors": list(n.retry.non_retryable_errors),
                    },
                }
                for n in sorted(self.nodes.values(), key=lambda n: n.node_id)
            ],
            "edges": [[f, k, t] for (f, k), t in sorted(self.edges.items())],
        }

    def conflict_message(self, stored: dict[str, Any]) -> str:
        """Why this definition cannot be registered over the `stored` one (its `to_json`) of the same version."""
        where = _first_difference(stored, self.to_json(), "graph")
        return (
            f"graph {shown(self.graph_id)} version {self.version} is registered with another definition "
            f"(first difference: {where}); a version is immutable, register a new version"
        )

    @classmethod
    def from_json(cls, data: dict[str, Any], namespace: Namespace = DEFAULT_NAMESPACE) -> GraphSpec:
        """Rebuild a definition stored by `to_json` in `namespace`."""
        nodes = {}
        for n in data["nodes"]:
            r = n["retry"]
            retry = RetrySpec(
                max_attempts=r["max_attempts"],
                initial_interval=timedelta(seconds=r["initial_interval_s"]),
                backoff=r["backoff"],
                max_interval=None if r["max_interval_s"] is None else timedelta(seconds=r["max_interval_s"]),
                non_retryable_errors=tuple(r["non_retryable_errors"]),
            )
            nodes[n["node_id"]] = NodeSpec(n["node_id"], n["task_queue"], retry)
        return cls(
            graph_id=data["graph_id"],
            version=data["version"],
            entry_node=data["entry_node"],
            nodes=nodes,
            edges={(f, k): t for f, k, t in data["edges"]},
            namespace=namespace,
        )


def _first_difference(stored: Any, given: Any, path: str) -> str:
    """The path of the first place two JSON-shaped values differ, with both values there."""
    if isinstance(stored, dict) and isinstance(given, dict):
        for name in sorted(stored.keys() | given.keys()):
            if stored.get(name) != given.get(name):
                return _first_difference(stored.get(name), given.get(name), f"{path}.{name}")
    elif isinstance(stored, list) and isinstance(given, list):
        # Nodes are listed sorted by id: name them by id, not by position.
        for i in range(max(len(stored), len(given))):
            a = stored[i] if i < len(stored) else None
            b = given[i] if i < len(given) else None
            if a != b:
                label = a.get("node_id") if isinstance(a, dict) else None
                label = label or (b.get("node_id") if isinstance(b, dict) else None)
                return _first_difference(a, b, f"{path}[{shown(label) if label else i}]")
    return f"{path} is {shown(stored)} in the registered version, {shown(given)} in this one"
