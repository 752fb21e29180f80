"""Metrics and probes over real HTTP: scrape /metrics, parse it, check what the counters say."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

import cmo
from cmo_server.app import CmoServer
from cmo_server.config import ServerConfig, StoreConfig, TelemetryConfig
from cmo_server.domain import END_NODE, ActivityRecord, Checkpoint, GraphSpec, NodeSpec
from cmo_server.telemetry._metrics import MAX_LABEL_VALUES
from tests.integration.contract.helpers import NS

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
METRICS_ON = TelemetryConfig(metrics_listen="127.0.0.1:0")


async def scrape(port: int) -> Samples:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{port}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def get(port: int, path: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.get(f"http://127.0.0.1:{port}{path}")


@cmo.activity
async def fetch(what: str) -> str:
    return what.upper()


def two_step_graph(queue: str) -> cmo.Graph[dict[str, Any]]:
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(f"metrics-{uuid.uuid4().hex[:8]}", task_queue=queue)

    @graph.node(entry=True, edges={"next": "second"})
    async def first(state: dict[str, Any], ctx: cmo.NodeContext) -> cmo.NodeResult[dict[str, Any]]:
        return cmo.NodeResult({**state, "first": await ctx.activity(fetch, "a")}, next="next")

    @graph.node
    async def second(state: dict[str, Any], ctx: cmo.NodeContext) -> cmo.NodeResult[dict[str, Any]]:
        return cmo.NodeResult({**state, "second": await ctx.activity(fetch, "b")}, next=cmo.END)

    return graph


async def test_counters_move_as_runs_go_and_the_gauges_count_the_store(server_config: ServerConfig):
    config = replace(server_config, telemetry=METRICS_ON)
    queue, idle = f"q-{uuid.uuid4().hex[:8]}", f"idle-{uuid.uuid4().hex[:8]}"
    graph = two_step_graph(queue)
    async with CmoServer.running(config) as server, await cmo.Client.connect(f"127.0.0.1:{server.port}") as client:
        assert server.metrics_port > 0
        worker = cmo.Worker(client, [graph], poll_wait=1.0)
        running = asyncio.create_task(worker.run())
        try:
            handles = [await client.start(graph, {}) for _ in range(3)]
            for handle in handles:
                assert await handle.result(timeout=20) == {"first": "A", "second": "B"}
        finally:
            worker.shutdown()
            await asyncio.wait_for(running, 30)
        # A run nobody serves waits in its queue.
        unserved = cmo.Graph(f"unserved-{uuid.uuid4().hex[:8]}", task_queue=idle)
        unserved.node(lambda state, ctx: cmo.NodeResult(state, next=cmo.END), name="only", entry=True)
        await client.register_graph(unserved)
        await client.start(unserved, {})

        samples = await scrape(server.metrics_port)

    # 3 runs of 2 steps: 6 tasks leased, whether claimed, handed to a parked poll or eager.
    assert value(samples, "cmo_tasks_dispatched_total", task_queue=queue) == 6
    assert value(samples, "cmo_step_duration_seconds_count", graph_id=graph.graph_id, node_id="first") == 3
    assert value(samples, "cmo_step_duration_seconds_count", graph_id=graph.graph_id, node_id="second") == 3
    assert value(samples, "cmo_step_duration_seconds_sum", graph_id=graph.graph_id, node_id="first") > 0
    # One per activity although a record is often sent twice (in the background and on the checkpoint).
    assert value(samples, "cmo_activities_recorded_total", kind="call") == 6
    # Each activity's run time as its worker measured it, once per activity.
    assert value(samples, "cmo_activity_duration_seconds_count", kind="call") == 6
    assert value(samples, "cmo_activity_duration_seconds_sum", kind="call") > 0
    assert value(samples, "cmo_poll_wait_seconds_count") >= 1
    assert value(samples, "cmo_lease_expiries_total") == 0
    ns = "default/default"
    assert value(samples, "cmo_queue_depth", namespace=ns, task_queue=idle) == 1
    assert (samples.get(("cmo_queue_depth", frozenset({("namespace", ns), ("task_queue", queue)}))) or 0) == 0
    assert value(samples, "cmo_runs", namespace=ns, status="COMPLETED") == 3
    assert value(samples, "cmo_runs", namespace=ns, status="PENDING") == 1
    assert value(samples, "cmo_runs", namespace=ns, status="FAILED") == 0  # every status is there, zero or not
    assert value(samples, "cmo_polls_parked") == 0


async def test_a_claim_after_a_lapsed_lease_counts_as_a_lease_expiry(server_config: ServerConfig):
    config = replace(server_config, telemetry=METRICS_ON)  # FAST_LIMITS: 1 s leases
    spec = GraphSpec(f"lapse-{uuid.uuid4().hex[:8]}", 1, "only", {"only": NodeSpec("only", "lapse")}, {})
    async with CmoServer.running(config) as server:
        engine = server.engine
        await engine.register_graph(spec)
        run, _ = await engine.start_run(NS, run_id="", graph_id=spec.graph_id, graph_version=1, input=b"{}")
        poll: dict[str, Any] = {"task_queues": ["lapse"], "graphs": [(spec.graph_id, 1)], "wait": 5.0}
        first = await engine.poll_task(NS, worker_id="vanishes", **poll)
        second = await engine.poll_task(NS, worker_id="takes-over", **poll)  # after the first lease lapses
        assert first is not None
        assert second is not None
        assert (second.run_id, second.attempt) == (run.run_id, first.attempt + 1)

        samples = await scrape(server.metrics_port)

    assert value(samples, "cmo_lease_expiries_total") == 1
    assert value(samples, "cmo_tasks_dispatched_total", task_queue="lapse") == 2
    assert value(samples, "cmo_poll_wait_seconds_count") == 2
    assert value(samples, "cmo_poll_wait_seconds_sum") >= 0.5  # the second poll waited out the lease


async def test_probes_say_live_and_ready_then_not_ready_when_shutting_down(server_config: ServerConfig):
    config = replace(server_config, telemetry=METRICS_ON)
    async with CmoServer.running(config) as server:
        port = server.metrics_port
        assert (await get(port, "/healthz")).status_code == 200
        ready = await get(port, "/readyz")
        assert (ready.status_code, ready.text) == (200, "ready\n")
        assert (await get(port, "/nowhere")).status_code == 404
        async with httpx.AsyncClient() as http:
            assert (await http.post(f"http://127.0.0.1:{port}/metrics")).status_code == 405

        await server.stop(0)  # health NOT_SERVING; the endpoint stays up until the server is closed

        assert (await get(port, "/readyz")).status_code == 503
        assert (await get(port, "/healthz")).status_code == 200


async def test_two_servers_in_one_process_count_apart(tmp_path):
    base = ServerConfig(listen="127.0.0.1:0", telemetry=METRICS_ON)
    one = replace(base, store=StoreConfig(sqlite_path=str(tmp_path / "one.db")))
    two = replace(base, store=StoreConfig(sqlite_path=str(tmp_path / "two.db")))
    spec = GraphSpec(f"apart-{uuid.uuid4().hex[:8]}", 1, "only", {"only": NodeSpec("only", "apart")}, {})
    async with CmoServer.running(one) as first, CmoServer.running(two) as second:
        await first.engine.register_graph(spec)
        await first.engine.start_run(NS, run_id="", graph_id=spec.graph_id, graph_version=1, input=b"{}")
        task = await first.engine.poll_task(
            NS, worker_id="w", task_queues=["apart"], graphs=[(spec.graph_id, 1)], wait=1
        )
        assert task is not None
        counted, untouched = await scrape(first.metrics_port), await scrape(second.metrics_port)
    assert value(counted, "cmo_tasks_dispatched_total", task_queue="apart") == 1
    assert value(untouched, "cmo_tasks_dispatched_total", task_queue="apart") == 0
    assert value(untouched, "cmo_runs", namespace="default/default", status="RUNNING") == 0
    assert value(counted, "cmo_runs", namespace="default/default", status="RUNNING") == 1


async def test_without_a_listen_address_there_is_no_endpoint(server_config: ServerConfig):
    async with CmoServer.running(server_config) as server:
        assert server.metrics_port == 0


async def test_client_chosen_label_values_are_bounded(server_config: ServerConfig):
    # 200 graphs, each with its own node, queue and activity kind: without a bound each would be
    # a new series of every metric that carries it, for as long as the server runs.
    config = replace(server_config, telemetry=METRICS_ON)
    tag = uuid.uuid4().hex[:8]
    specs = [GraphSpec(f"g{i}-{tag}", 1, f"n{i}", {f"n{i}": NodeSpec(f"n{i}", f"q{i}-{tag}")}, {}) for i in range(200)]
    async with CmoServer.running(config) as server:
        engine = server.engine
        for i, spec in enumerate(specs):
            await engine.register_graph(spec)
            await engine.start_run(NS, run_id="", graph_id=spec.graph_id, graph_version=1, input=b"{}")
            node = spec.nodes[spec.entry_node]
            poll: dict[str, Any] = {"task_queues": [node.task_queue], "graphs": [(spec.graph_id, 1)], "wait": 5.0}
            task = await engine.poll_task(NS, worker_id="w", **poll)
            assert task is not None
            kind = "call" if i == 0 else f"kind.{i}"  # a known kind keeps its name
            record = ActivityRecord(0, kind, "a", "h", b"1", None, task.attempt, duration=timedelta(milliseconds=1))
            await engine.record_activity(task.key, record)
            done = Checkpoint(
                key=task.key, graph_id=spec.graph_id, graph_version=1, node_id=node.node_id,
                state=b"{}", output=b"", next_key=END_NODE, started_at=datetime.now(UTC),
            )  # fmt: skip
            await engine.complete_task(done)
            # And one run left waiting in each queue, for the queue depth gauge.
            await engine.start_run(NS, run_id="", graph_id=spec.graph_id, graph_version=1, input=b"{}")

        samples = await scrape(server.metrics_port)

    def label_values(name: str, label: str) -> dict[str, float]:
        found: dict[str, float] = {}
        for (sample, labels), count in samples.items():
            if sample == name:
                found[dict(labels)[label]] = found.get(dict(labels)[label], 0) + count
        return found

    kinds = label_values("cmo_activities_recorded_total", "kind")
    assert kinds == {"call": 1, "other": 199}
    assert label_values("cmo_activity_duration_seconds_count", "kind") == {"call": 1, "other": 199}
    for name, label in [
        ("cmo_tasks_dispatched_total", "task_queue"),
        ("cmo_step_duration_seconds_count", "graph_id"),
        ("cmo_step_duration_seconds_count", "node_id"),
        ("cmo_queue_depth", "task_queue"),
    ]:
        counts = label_values(name, label)
        assert len(counts) == MAX_LABEL_VALUES + 1, (name, label, len(counts))
        assert counts["other"] == 100, (name, label)
        assert sum(counts.values()) == 200, (name, label)  # nothing is lost, only named "other"
    # The pair is bounded, not each label alone: at most 101 histograms, not 101 x 101.
    pairs = {
        (dict(labels)["graph_id"], dict(labels)["node_id"])
        for (name, labels) in samples
        if name.startswith("cmo_step_duration_seconds")
    }
    assert len(pairs) == MAX_LABEL_VALUES + 1
