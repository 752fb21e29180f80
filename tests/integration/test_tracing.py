"""Traces: one run is one trace, from the caller's span through StartRun to every step on any worker."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import timedelta
from typing import Any

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.util.types import AttributeValue

import cmo
from cmo.errors import ActivityError, ApplicationError
from cmo_server.app import CmoServer
from cmo_server.config import ServerConfig
from tests.support.waiting import assert_eventually

START_RUN = "/cmo.api.v1.RunService/StartRun"


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


@contextlib.asynccontextmanager
async def worker(
    port: int, graph: cmo.Graph[Any], provider: TracerProvider | None, **options: Any
) -> AsyncIterator[None]:
    """A worker with a client (and channel) of its own, as another process would have."""
    async with await cmo.Client.connect(f"127.0.0.1:{port}", tracer_provider=provider) as client:
        w = cmo.Worker(client, [graph], poll_wait=1.0, **options)
        running = asyncio.create_task(w.run())
        try:
            yield
        finally:
            w.shutdown()
            await asyncio.wait_for(running, 30)


@cmo.activity
async def lookup(step: str) -> str:
    return f"looked up {step}"


def three_queue_graph() -> cmo.Graph[dict[str, Any]]:
    """a and c on queue "left", b on queue "right": the run must cross from one worker to the other and back."""
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(f"hop-{uuid.uuid4().hex[:8]}")

    async def step(state: dict[str, Any], ctx: cmo.NodeContext, next_key: str) -> cmo.NodeResult[dict[str, Any]]:
        found = await ctx.activity(lookup, ctx.node_id)
        return cmo.NodeResult({**state, ctx.node_id: found}, next=next_key)

    async def a(state: dict[str, Any], ctx: cmo.NodeContext) -> cmo.NodeResult[dict[str, Any]]:
        return await step(state, ctx, "next")

    async def b(state: dict[str, Any], ctx: cmo.NodeContext) -> cmo.NodeResult[dict[str, Any]]:
        return await step(state, ctx, "next")

    async def c(state: dict[str, Any], ctx: cmo.NodeContext) -> cmo.NodeResult[dict[str, Any]]:
        return await step(state, ctx, cmo.END)

    graph.node(entry=True, edges={"next": "b"}, task_queue="left")(a)
    graph.node(edges={"next": "c"}, task_queue="right")(b)
    graph.node(task_queue="left")(c)
    return graph


def named(spans: tuple[ReadableSpan, ...] | list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def attrs(recorded: ReadableSpan | Event) -> Mapping[str, AttributeValue]:
    """The attributes of a finished span or of one of its events (None only if none were set)."""
    assert recorded.attributes is not None, f"{recorded.name} has no attributes"
    return recorded.attributes


def ordinal(span: ReadableSpan, name: str) -> int:
    """An integer attribute of `span`, to sort spans by."""
    value = attrs(span)[name]
    assert isinstance(value, int), f"{span.name} has {name}={value!r}"
    return value


def started(spans: tuple[ReadableSpan, ...]) -> list[ReadableSpan]:
    """The StartRun spans of the call that started the run: those that ended OK.

    Not "those without an error status": a server span of a NOT_FOUND (a start that raced the
    graph's registration) has no error status, as OpenTelemetry counts that code as the client's.
    """
    ok = grpc.StatusCode.OK.value[0]
    return [s for s in named(spans, START_RUN) if (s.attributes or {}).get("rpc.grpc.status_code") == ok]


async def test_a_three_step_run_over_two_workers_is_one_trace(
    server_config: ServerConfig, spans: tuple[TracerProvider, InMemorySpanExporter]
):
    provider, exporter = spans
    graph = three_queue_graph()
    async with (
        CmoServer.running(server_config, tracer_provider=provider) as server,
        worker(server.port, graph, provider, task_queues=["left"], worker_id="w-left"),
        worker(server.port, graph, provider, task_queues=["right"], worker_id="w-right"),
        await cmo.Client.connect(f"127.0.0.1:{server.port}", tracer_provider=provider) as client,
    ):
        with provider.get_tracer("test").start_as_current_span("caller") as caller:
            handle = await client.start(graph, {})
        result = await handle.result(timeout=20)
        assert set(result) == {"a", "b", "c"}
        # A step's span ends once its checkpoint is acknowledged, a moment after the run completes.
        await assert_eventually(lambda: len(named(exporter.get_finished_spans(), "cmo.step")) == 3, what="3 steps")

    finished = exporter.get_finished_spans()
    trace_id = caller.get_span_context().trace_id
    assert {s.context.trace_id for s in finished if s.name.startswith("cmo.")} == {trace_id}

    # caller -> StartRun (client) -> StartRun (server) -> each step. (A start that raced the workers'
    # registration of the graph was refused NOT_FOUND: the client registered it and started again.)
    [start_server] = [s for s in started(finished) if s.kind is SpanKind.SERVER]
    [start_client] = [s for s in started(finished) if s.kind is SpanKind.CLIENT]
    assert start_client.parent is not None
    assert start_client.parent.span_id == caller.get_span_context().span_id
    assert start_server.parent is not None
    assert start_server.parent.span_id == start_client.context.span_id

    steps = sorted(named(finished, "cmo.step"), key=lambda s: ordinal(s, "cmo.step_index"))
    assert [(attrs(s)["cmo.step_index"], attrs(s)["cmo.node_id"], attrs(s)["cmo.worker_id"]) for s in steps] == [
        (0, "a", "w-left"),
        (1, "b", "w-right"),
        (2, "c", "w-left"),
    ]
    for s in steps:
        assert s.parent is not None
        assert s.parent.span_id == start_server.context.span_id
        assert attrs(s)["cmo.run_id"] == handle.run_id
        assert (attrs(s)["cmo.attempt"], attrs(s)["cmo.graph_id"]) == (1, graph.graph_id)
        assert attrs(s)["cmo.graph_version"] == graph.version
        assert s.status.status_code is StatusCode.UNSET

    # Each activity hangs under the step that ran it; each checkpoint call too, on both sides.
    by_id = {s.context.span_id: s for s in steps}
    activities = named(finished, "cmo.activity")
    assert len(activities) == 3
    for act in activities:
        assert act.parent is not None
        parent = by_id[act.parent.span_id]
        assert attrs(act)["cmo.activity.name"] == lookup.name
        assert (attrs(act)["cmo.activity.kind"], attrs(act)["cmo.activity.seq"]) == ("call", 0)
        assert attrs(act)["cmo.activity.try_count"] == 1
        assert attrs(parent)["cmo.node_id"] in ("a", "b", "c")
    node_ids = [attrs(by_id[a.parent.span_id])["cmo.node_id"] for a in activities if a.parent]
    assert sorted(node_ids, key=str) == ["a", "b", "c"]
    completes = [s for s in named(finished, "/cmo.api.v1.WorkerService/CompleteTask") if s.kind is SpanKind.CLIENT]
    assert {c.parent.span_id for c in completes if c.parent} == set(by_id)
    # The server's span of each checkpoint (a call on the worker's session) is the client span's child.
    handled = [s for s in named(finished, "/cmo.api.v1.WorkerService/CompleteTask") if s.kind is SpanKind.SERVER]
    assert sorted(s.parent.span_id for s in handled if s.parent) == sorted(c.context.span_id for c in completes)
    assert {attrs(s)["rpc.grpc.status_code"] for s in handled} == {grpc.StatusCode.OK.value[0]}


@cmo.activity(retry=cmo.RetryPolicy(max_attempts=1))
async def broken() -> None:
    raise RuntimeError("the tool is down")


async def test_retries_replays_waits_and_failures_show_in_the_trace(
    server_config: ServerConfig, spans: tuple[TracerProvider, InMemorySpanExporter]
):
    provider, exporter = spans
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(f"flaky-{uuid.uuid4().hex[:8]}")

    @graph.node(entry=True, retry=cmo.RetryPolicy(max_attempts=3, initial_interval=timedelta(milliseconds=50)))
    async def flaky(state: dict[str, Any], ctx: cmo.NodeContext) -> cmo.NodeResult[dict[str, Any]]:
        await ctx.activity(lookup, "flaky")
        if ctx.attempt == 1:
            raise ApplicationError("not yet")
        await ctx.sleep(0.05)
        with contextlib.suppress(ActivityError):
            await ctx.activity(broken)
        return cmo.NodeResult(state, next=cmo.END)

    async with (
        CmoServer.running(server_config, tracer_provider=provider) as server,
        worker(server.port, graph, provider),
        await cmo.Client.connect(f"127.0.0.1:{server.port}", tracer_provider=provider) as client,
    ):
        handle = await client.start(graph, {})
        await handle.result(timeout=20)
        await assert_eventually(lambda: len(named(exporter.get_finished_spans(), "cmo.step")) == 3, what="3 attempts")

    steps = sorted(named(exporter.get_finished_spans(), "cmo.step"), key=lambda s: ordinal(s, "cmo.attempt"))
    first, suspended, last = steps
    assert len({s.context.trace_id for s in steps}) == 1
    assert first.status.status_code is StatusCode.ERROR  # the attempt that failed
    assert [e.name for e in suspended.events] == ["cmo.activity.replayed", "cmo.suspend"]
    assert suspended.events[1].attributes == {"cmo.wait.kind": "timer", "cmo.wait.name": "", "cmo.wait.seq": 1}
    assert [(e.name, attrs(e)["cmo.activity.kind"]) for e in last.events] == [
        ("cmo.activity.replayed", "call"),
        ("cmo.activity.replayed", "timer"),
    ]
    # Activities that ran have spans (a replayed one has none); the broken one is an error.
    activities = {
        (a.parent.span_id, attrs(a)["cmo.activity.name"]): a
        for a in named(exporter.get_finished_spans(), "cmo.activity")
        if a.parent
    }
    assert set(activities) == {(first.context.span_id, lookup.name), (last.context.span_id, broken.name)}
    failed = activities[(last.context.span_id, broken.name)]
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "RuntimeError: the tool is down"


async def test_without_a_tracer_provider_runs_work_and_nothing_is_configured(server_config: ServerConfig):
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    graph = three_queue_graph()
    async with (
        CmoServer.running(server_config) as server,
        worker(server.port, graph, None, task_queues=["left", "right"]),
        await cmo.Client.connect(f"127.0.0.1:{server.port}") as client,
    ):
        result = await (await client.start(graph, {})).result(timeout=20)
    assert set(result) == {"a", "b", "c"}
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)  # the library set none


async def test_a_server_that_records_no_spans_still_passes_the_callers_context_on(
    server_config: ServerConfig, spans: tuple[TracerProvider, InMemorySpanExporter]
):
    provider, exporter = spans
    graph = three_queue_graph()
    async with (
        CmoServer.running(server_config) as server,  # no provider: no server spans
        worker(server.port, graph, provider, task_queues=["left", "right"]),
        await cmo.Client.connect(f"127.0.0.1:{server.port}", tracer_provider=provider) as client,
    ):
        with provider.get_tracer("test").start_as_current_span("caller") as caller:
            handle = await client.start(graph, {})
        await handle.result(timeout=20)
        await assert_eventually(lambda: len(named(exporter.get_finished_spans(), "cmo.step")) == 3, what="3 steps")

    finished = exporter.get_finished_spans()
    [start_client] = started(finished)
    assert start_client.kind is SpanKind.CLIENT
    for step in named(finished, "cmo.step"):
        assert step.context.trace_id == caller.get_span_context().trace_id
        assert step.parent is not None
        assert step.parent.span_id == start_client.context.span_id
