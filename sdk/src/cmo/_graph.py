"""Graph authoring: nodes, edges, the entry node and the state type."""

from __future__ import annotations

import base64
import inspect
import random as _random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from cmo._activity import KIND_SIGNAL, KIND_TIMER
from cmo._retry import RetryPolicy
from cmo.serialization import parse_json

if TYPE_CHECKING:
    from cmo._activity import Activity, ActivityRunner
    from cmo._artifacts import Artifacts
    from cmo._http import HttpResponse
    from cmo._mcp import McpServer, McpToolResult
    from cmo.a2a import AgentId, Budget, SpecialistResult
    from cmo.a2a.invoke import Messaging
    from cmo.api.v1.worker_service_pb2_grpc import WorkerServiceStub
    from cmo.registry import RegistryClient
from cmo.errors import GraphError

__all__ = ["END", "Graph", "Node", "NodeContext", "NodeResult"]

S = TypeVar("S")
T = TypeVar("T")
P = ParamSpec("P")

END = "__end__"
"""Return `next=END` (or route an edge to END) to finish the run."""


@dataclass(frozen=True, slots=True)
class NodeResult(Generic[S]):
    """What a node returns: the new state, the edge key to follow, and an optional output."""

    state: S
    """The state after the step; it is checkpointed."""
    next: str = END
    """Edge key to follow from this node; END finishes the run."""
    output: Any = None
    """JSON-shaped data recorded with the step (not part of the state)."""


class NodeContext:
    """What a node may know about its step, and its only sources of time and randomness.

    Everything nondeterministic goes through here so that a retried or replayed step sees the
    same values: `now()` is the step's logical time fixed by the server when the step was first
    scheduled, and `random()` draws from a generator seeded by the run's seed and the step index.
    """

    def __init__(
        self,
        *,
        run_id: str,
        step_index: int,
        attempt: int,
        node_id: str,
        graph_id: str,
        graph_version: int,
        logical_time: datetime,
        seed: int,
        activities: ActivityRunner | None = None,
        worker_stub: WorkerServiceStub | None = None,
        tenant: str = "default",
        project: str = "default",
        messaging: Messaging | None = None,
        registry: RegistryClient | None = None,
    ) -> None:
        self.tenant = tenant
        """The run's namespace: its tenant and project."""
        self.project = project
        self.run_id = run_id
        self.step_index = step_index
        self.attempt = attempt
        """1 for the first attempt; more after a retry or a lost lease."""
        self.node_id = node_id
        self.graph_id = graph_id
        self.graph_version = graph_version
        self._logical_time = logical_time
        self._seed = seed
        self._rng: _random.Random | None = None
        self._activities = activities
        self._worker_stub = worker_stub
        self._artifacts: Artifacts | None = None
        self._messaging = messaging
        self._registry = registry
        self._invocations = 0

    def now(self) -> datetime:
        """The step's logical time (UTC): the same on every attempt and on replay."""
        return self._logical_time

    def random(self) -> float:
        """A float in [0, 1) from the step's deterministic generator."""
        return self.rng.random()

    def activity(self, act: Activity[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Awaitable[T]:
        """Run an activity (a function declared with `@cmo.activity`) and record its outcome.

        The call is numbered when it is made, so start concurrent activities in a fixed order
        (`asyncio.gather(ctx.activity(a), ctx.activity(b))`). On a retry of the step a recorded
        result is returned without running the function again, while an activity that failed runs
        again; when the step resumes after a wait, or on replay, every recorded outcome is
        returned as it was (a recorded error raised again).

        Raises:
            ActivityError: the activity failed after its own retries.
            NondeterminismError: the step recorded a different activity at this point.
        """
        return self._runner("activity").start(act, args, kwargs)

    async def http(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        content: bytes | None = None,
        timeout: timedelta = timedelta(seconds=30),
        retry: RetryPolicy | None = None,
        raise_for_status: bool = False,
    ) -> HttpResponse:
        """Send an HTTP request as a recorded activity; status, headers and body are recorded.

        The request carries an `Idempotency-Key` header, stable for this call. Network errors, 429
        and 5xx answers are tried again per `retry` (3 tries, 0.2 s apart and doubling, by
        default), honouring a 429's or 503's Retry-After up to the policy's `max_interval` (60 s
        without one); only the last answer is recorded.

        Args:
            method: "GET", "POST" …
            url: The URL.
            headers: Request headers.
            json: A JSON body (sent as canonical JSON), instead of `content`.
            content: A raw body.
            timeout: Limit of each try.
            retry: The tries before the outcome is recorded.
            raise_for_status: An error status (4xx, 5xx) of the last answer is a failure: recorded
                and raised as `HttpStatusError`, and sent again by a retry of the node. Without
                it, any answer is the call's result, returned and replayed as it is.

        Raises:
            HttpStatusError: with `raise_for_status`, the last answer was an error status.
            ActivityError: the last try failed on the network (a connection refused, a timeout).
        """
        from cmo._http import HttpResponse, http_activity
        from cmo.serialization import canonical_json

        sent = dict(headers or {})
        if json is not None:
            content = canonical_json(json)
            sent.setdefault("content-type", "application/json")
        body = base64.b64encode(content).decode() if content is not None else None
        act = http_activity(method, retry=retry)
        args = (method.upper(), url, sent, body, timeout.total_seconds())
        # raise_for_status is part of the request only when set: records made without it keep their hash.
        recorded = await (
            self.activity(act, *args, raise_for_status=True) if raise_for_status else self.activity(act, *args)
        )
        return HttpResponse.from_record(recorded)

    async def mcp(
        self,
        server: McpServer,
        tool: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        timeout: timedelta = timedelta(seconds=60),
        retry: RetryPolicy | None = None,
    ) -> McpToolResult:
        """Call an MCP server's tool as a recorded activity (`cmo-sdk[mcp]`).

        The answer (content blocks, structured content, `is_error`) is recorded: a retried step
        or a replay returns it without asking the server again. A server that cannot be started
        or reached is tried again per `retry` (3 tries, 0.5 s apart and doubling, by default).

        Args:
            server: `McpServer.stdio(command, *args)` or `McpServer.http(url)`.
            tool: The tool's name.
            arguments: Its arguments (JSON data).
            timeout: How long the tool may take.
            retry: The tries before the outcome is recorded.

        Raises:
            ActivityError: the last try could not reach the server or get an answer.
        """
        from cmo._mcp import McpToolResult, mcp_activity

        act = mcp_activity(tool, retry=retry)
        recorded = await self.activity(act, server.to_json(), tool, dict(arguments or {}), timeout.total_seconds())
        return McpToolResult.from_record(recorded)

    async def invoke_specialist(
        self,
        specialist: str | AgentId | None = None,
        *,
        capability: str | None = None,
        version: str = "",
        task: str,
        inputs: Mapping[str, Any] | None = None,
        budget: Budget | None = None,
        timeout: timedelta = timedelta(minutes=5),
    ) -> SpecialistResult:
        """Ask a specialist agent for a proposal and wait for its answer, durably.

        The request (a signed SpecialistInvocationRequest on the specialist's invoke topic) is a
        recorded activity, built the same way on every attempt, so a retried or recovered step
        publishes nothing new. The step then waits for the answer holding no worker slot, across
        worker and server restarts, like `wait_for_signal`; the server hands the answer to the
        run. A replay returns the recorded answer. Needs a worker with `messaging=`.

        Name the specialist, or give a `capability`: then a HEALTHY agent that has it is picked
        from the registry (the least loaded, spread over equals), and if it becomes UNAVAILABLE
        before answering, another one is asked (see `cmo.a2a.invoke`).

        Args:
            specialist: Its agent id (`"healer"` on `qa.<tenant>.<project>.specialists.healer.invoke`).
            capability: What the agent must be able to do (`"healing.selector"`), instead of a name.
            version: With `capability`: a version constraint such as `">=1.2,<2"`.
            task: What to do.
            inputs: Its inputs (JSON data).
            budget: What it may spend; by default the timeout in minutes and no money.
            timeout: How long to wait for the answer (a durable timer), per agent asked.

        Raises:
            SpecialistTimeoutError: no answer came within `timeout`.
            SpecialistUnavailableError: by capability, no HEALTHY agent was there to ask, or each
                one asked left without answering.
            RunCancelledError: the run was cancelled before or during the wait.
        """
        from cmo.a2a.invoke import invoke_specialist

        if (specialist is None) == (capability is None):
            raise TypeError("ctx.invoke_specialist takes a specialist or a capability, not both or neither")

        def next_sequence() -> int:
            sequence, self._invocations = self._invocations, self._invocations + 1
            return sequence

        return await invoke_specialist(
            self,
            self._messaging,
            specialist,
            capability=capability,
            version=version,
            registry=self._registry,
            task=task,
            inputs=dict(inputs or {}),
            budget=budget,
            timeout=timeout,
            next_sequence=next_sequence,
        )

    async def sleep(self, duration: float | timedelta) -> None:
        """Wait `duration` (seconds or a timedelta) on a durable timer, holding no worker slot.

        The step is suspended and runs again once the timer has fired, after server or worker
        restarts too; this call then returns at once.

        Raises:
            RunCancelledError: the run was cancelled before or during the wait.
        """
        await self._runner("sleep").wait(KIND_TIMER, "", _duration("duration", duration))

    async def wait_for_signal(self, name: str, *, timeout: float | timedelta | None = None) -> Any:
        """Wait for the signal `name` (`client.signal` / `cmoctl runs signal`), holding no worker slot.

        A signal sent before the wait is kept and taken here at once. Signals of one name are
        taken in the order they were sent, one per wait.

        Returns:
            The signal's payload (JSON data; None when it had none).

        Raises:
            SignalTimeoutError: `timeout` passed first.
            RunCancelledError: the run was cancelled before or during the wait.
        """
        if not name or not name.isprintable() or any(c.isspace() for c in name) or len(name) > 128:
            raise ValueError(f"signal name must be 1 to 128 printable characters without white space, got {name!r}")
        limit = None if timeout is None else _duration("timeout", timeout)
        payload = await self._runner("wait_for_signal").wait(KIND_SIGNAL, name, limit)
        return parse_json(payload) if payload else None

    @property
    def cancel_requested(self) -> bool:
        """CancelRun was called for the run: wind up (the next ctx call raises RunCancelledError)."""
        return self._activities is not None and self._activities.cancel_requested

    def _runner(self, what: str) -> ActivityRunner:
        if self._activities is None:
            raise RuntimeError(f"ctx.{what} needs a worker: this context has no activity recorder")
        return self._activities

    @property
    def artifacts(self) -> Artifacts:
        """Put and get artifacts of this run (`await ctx.artifacts.put(data)`), as recorded activities."""
        if self._artifacts is None:
            from cmo._artifacts import Artifacts

            self._artifacts = Artifacts(self, self._worker_stub)
        return self._artifacts

    @property
    def rng(self) -> _random.Random:
        """The step's deterministic generator, for other distributions (randint, choice …)."""
        if self._rng is None:  # seeded on first use: most nodes never draw
            self._rng = _random.Random(f"{self._seed}:{self.step_index}")
        return self._rng


def _duration(field: str, value: float | timedelta) -> timedelta:
    duration = value if isinstance(value, timedelta) else timedelta(seconds=value)
    if duration < timedelta(0):
        raise ValueError(f"{field} must not be negative, got {value!r}")
    return duration


NodeFn = Callable[[Any, NodeContext], "Awaitable[NodeResult[Any]] | NodeResult[Any]"]


@dataclass(frozen=True, slots=True)
class Node:
    """A node of a graph: its function, outgoing edges, queue and retry policy."""

    name: str
    fn: NodeFn
    edges: Mapping[str, str] = field(default_factory=dict)
    """Edge key -> target node name (or END)."""
    task_queue: str = "default"
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    async def run(self, state: Any, ctx: NodeContext) -> NodeResult[Any]:
        """Call the node function (sync or async) and check what it returned."""
        result = self.fn(state, ctx)
        if inspect.isawaitable(result):
            result = await result
        if not isinstance(result, NodeResult):
            raise TypeError(f"node {self.name!r} must return NodeResult, got {type(result).__name__}")
        return result


class Graph(Generic[S]):
    """A versioned graph of nodes. Define nodes with the `node` decorator.

    Example:
        ```python
        triage = cmo.Graph("triage", version=1, state=Ticket)

        @triage.node(entry=True, edges={"answer": "reply"})
        async def classify(state: Ticket, ctx: cmo.NodeContext) -> cmo.NodeResult[Ticket]:
            return cmo.NodeResult(replace(state, label="bug"), next="answer")
        ```
    """

    def __init__(
        self, graph_id: str, *, version: int = 1, state: type[S] | None = None, task_queue: str = "default"
    ) -> None:
        if not graph_id:
            raise GraphError("graph_id must not be empty")
        if version < 1:
            raise GraphError(f"version must be >= 1, got {version}")
        self.graph_id = graph_id
        self.version = version
        self.state_type: type[S] | None = state
        """dict, a dataclass or a pydantic model; None means plain JSON data."""
        self.task_queue = task_queue
        """Queue of nodes that name none."""
        self.nodes: dict[str, Node] = {}
        self.entry: str | None = None

    @overload
    def node(
        self,
        fn: NodeFn,
        /,
        *,
        name: str | None = None,
        entry: bool = False,
        edges: Mapping[str, str] | None = None,
        task_queue: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> NodeFn: ...

    @overload
    def node(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        entry: bool = False,
        edges: Mapping[str, str] | None = None,
        task_queue: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> Callable[[NodeFn], NodeFn]: ...

    def node(
        self,
        fn: NodeFn | None = None,
        /,
        *,
        name: str | None = None,
        entry: bool = False,
        edges: Mapping[str, str] | None = None,
        task_queue: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> NodeFn | Callable[[NodeFn], NodeFn]:
        """Add a node; the function is returned unchanged.

        Args:
            fn: `(state, ctx) -> NodeResult`, async or not.
            name: Node name; the function's name by default.
            entry: This is where runs start.
            edges: Edge key -> target node name (or END).
            task_queue: Queue for this node's tasks; the graph's by default.
            retry: Retry policy for failed attempts.
        """

        def add(f: NodeFn) -> NodeFn:
            node_name = name or getattr(f, "__name__", "")
            if not node_name or node_name == END:
                raise GraphError(f"invalid node name {node_name!r}")
            if node_name in self.nodes:
                raise GraphError(f"graph {self.graph_id!r} already has a node {node_name!r}")
            self.nodes[node_name] = Node(
                node_name, f, dict(edges or {}), task_queue or self.task_queue, retry or RetryPolicy()
            )
            if entry:
                if self.entry is not None:
                    raise GraphError(f"graph {self.graph_id!r} has two entry nodes: {self.entry!r}, {node_name!r}")
                self.entry = node_name
            return f

        return add(fn) if fn is not None else add

    def validate(self) -> None:
        """Check the graph is complete: an entry node, edges that lead to nodes.

        Raises:
            GraphError: what is wrong, naming the node and edge.
        """
        if not self.nodes:
            raise GraphError(f"graph {self.graph_id!r} has no nodes")
        if self.entry is None:
            raise GraphError(f"graph {self.graph_id!r} has no entry node (use @graph.node(entry=True))")
        for node in self.nodes.values():
            for key, target in node.edges.items():
                if key == END:
                    raise GraphError(f"node {node.name!r}: the edge key {END!r} is reserved")
                if target != END and target not in self.nodes:
                    raise GraphError(f"node {node.name!r}: edge {key!r} leads to unknown node {target!r}")

    @property
    def task_queues(self) -> list[str]:
        """Every queue some node of this graph uses."""
        return sorted({n.task_queue for n in self.nodes.values()})

    def __repr__(self) -> str:
        return f"Graph({self.graph_id!r}, version={self.version}, nodes={list(self.nodes)})"
