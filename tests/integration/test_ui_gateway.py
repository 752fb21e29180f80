"""The web UI's JSON API (cmo_server.http) on a real server, on both backends: what it answers, and
that bad input is a 400 naming the field (a missing thing a 404), never a traceback or a class name."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

import cmo
from cmo_server.app import CmoServer
from cmo_server.config import ServerConfig, UIConfig
from tests.integration.test_runs import serving, unique


def waiting_graph(graph_id: str) -> cmo.Graph[dict[str, Any]]:
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(graph_id)

    @graph.node(entry=True, edges={"wait": "hold"})
    async def first(state: dict[str, Any], ctx: cmo.NodeContext) -> cmo.NodeResult[dict[str, Any]]:
        return cmo.NodeResult({**state, "first": True}, next="wait")

    @graph.node(edges={"done": cmo.END})
    async def hold(state: dict[str, Any], ctx: cmo.NodeContext) -> cmo.NodeResult[dict[str, Any]]:
        got = await ctx.wait_for_signal("go")
        return cmo.NodeResult({**state, "got": got}, next="done")

    return graph


@pytest.fixture
async def ui(server_config: ServerConfig) -> AsyncIterator[tuple[CmoServer, httpx.AsyncClient, cmo.Client]]:
    config = replace(server_config, ui=UIConfig(listen="127.0.0.1:0"))
    async with CmoServer.running(config) as server:
        assert server.ui_port
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.ui_port}", timeout=10) as http,
            await cmo.Client.connect(f"127.0.0.1:{server.port}") as client,
        ):
            yield server, http, client


async def wait_status(client: cmo.Client, run_id: str, status: cmo.RunStatus) -> cmo.RunInfo:
    for _ in range(300):
        info = await client.get_run(run_id)
        if info.status is status:
            return info
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} is {info.status.name}, not {status.name}")


async def test_a_run_its_steps_and_its_progress_as_the_sdk_reports_them(ui: Any):
    _server, http, client = ui
    graph = waiting_graph(unique("gw"))
    async with serving(client, [graph]):
        handle = await client.start(graph, {"a": 1})
        await wait_status(client, handle.run_id, cmo.RunStatus.WAITING)
        run = (await http.get(f"/api/v1/runs/{handle.run_id}")).json()
        assert run["status"] == "WAITING"
        assert run["input"] == {"a": 1}
        assert run["progress"]["reason"] == "signal"
        assert run["progress"]["summary"] == "step 1 (hold) waits for the signal 'go', with no time-out"
        assert run["waiting"]["name"] == "go"
        history = (await http.get(f"/api/v1/runs/{handle.run_id}/history")).json()
        assert [s["node_id"] for s in history["steps"]] == ["first"]
        assert history["steps"][0]["state"] == {"a": 1, "first": True}
        assert history["next_page_token"] == ""
        # Paging through steps with GetHistory's tokens.
        one = (await http.get(f"/api/v1/runs/{handle.run_id}/history", params={"page_size": 1})).json()
        assert one["next_page_token"] == ""  # the page is full, but there is no more
        rest = await http.get(f"/api/v1/runs/{handle.run_id}/history", params={"page_token": "0"})
        assert rest.json()["steps"] == []
        # Signal through the gateway: the run goes on and completes.
        sent = await http.post(f"/api/v1/runs/{handle.run_id}/signal", json={"name": "go", "payload": [1, "two"]})
        assert sent.status_code == 200
        assert sent.json()["delivered"] is True
        done = await wait_status(client, handle.run_id, cmo.RunStatus.COMPLETED)
    assert done.result == {"a": 1, "first": True, "got": [1, "two"]}
    first = (await http.get(f"/api/v1/runs/{handle.run_id}/history", params={"page_size": 1})).json()
    assert ([s["node_id"] for s in first["steps"]], first["next_page_token"]) == (["first"], "0")
    second = (await http.get(f"/api/v1/runs/{handle.run_id}/history", params={"page_token": "0"})).json()
    assert ([s["node_id"] for s in second["steps"]], second["next_page_token"]) == (["hold"], "")
    export = await http.get(f"/api/v1/runs/{handle.run_id}/export")
    assert export.headers["content-disposition"] == f'attachment; filename="run-{handle.run_id}.json"'
    assert export.json() == (await client.export_history(handle.run_id)).to_json()
    graph_doc = (await http.get(f"/api/v1/graphs/{graph.graph_id}/versions/1")).json()
    assert graph_doc["entry_node"] == "first"
    assert graph_doc["edges"] == [
        {"from": "first", "key": "wait", "to": "hold"},
        {"from": "hold", "key": "done", "to": "__end__"},
    ]
    listed = (await http.get("/api/v1/graphs", params={"graph_id": graph.graph_id})).json()
    assert [(g["graph_id"], g["version"]) for g in listed["graphs"]] == [(graph.graph_id, 1)]


async def test_the_runs_list_filters_by_time_and_id_prefix_and_pages(ui: Any):
    _server, http, client = ui
    graph = waiting_graph(unique("list"))
    await client.register_graph(graph)
    ids = [f"{p}-{i}" for p in ("alpha", "beta") for i in range(3)]
    for run_id in ids:
        await client.start(graph, {}, run_id=run_id)
    middle = (await client.get_run("beta-0")).created_at
    params = {"graph_id": graph.graph_id}
    everything = (await http.get("/api/v1/runs", params=params)).json()
    assert [r["run_id"] for r in everything["runs"]] == ids[::-1]
    assert everything["runs"][0]["progress"]["reason"] == "no_poller"
    page = (await http.get("/api/v1/runs", params={**params, "page_size": 4})).json()
    assert len(page["runs"]) == 4
    after = await http.get("/api/v1/runs", params={**params, "page_size": 4, "page_token": page["next_page_token"]})
    assert [r["run_id"] for r in after.json()["runs"]] == ["alpha-1", "alpha-0"]
    # A search reads only the runs whose id has the prefix (through an index), in id order.
    prefixed = (await http.get("/api/v1/runs", params={**params, "q": "alpha-"})).json()
    assert [r["run_id"] for r in prefixed["runs"]] == ["alpha-0", "alpha-1", "alpha-2"]
    assert prefixed["scanned"] == 3
    two = (await http.get("/api/v1/runs", params={**params, "q": "alpha-", "page_size": 2})).json()
    assert [r["run_id"] for r in two["runs"]] == ["alpha-0", "alpha-1"]
    last = await http.get("/api/v1/runs", params={**params, "q": "alpha-", "page_token": two["next_page_token"]})
    assert [r["run_id"] for r in last.json()["runs"]] == ["alpha-2"]
    windowed = await http.get("/api/v1/runs", params={**params, "q": "beta", "before": middle.isoformat()})
    assert [r["run_id"] for r in windowed.json()["runs"]] == []  # beta-0 was created at `middle` itself
    since = (await http.get("/api/v1/runs", params={**params, "after": middle.isoformat()})).json()
    assert [r["run_id"] for r in since["runs"]] == ["beta-2", "beta-1", "beta-0"]
    assert since["next_page_token"] == ""
    until = (await http.get("/api/v1/runs", params={**params, "before": middle.isoformat()})).json()
    assert [r["run_id"] for r in until["runs"]] == ["beta-0", "alpha-2", "alpha-1", "alpha-0"]
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert (await http.get("/api/v1/runs", params={**params, "after": later})).json()["runs"] == []
    waiting = (await http.get("/api/v1/runs", params={**params, "status": "completed"})).json()
    assert waiting["runs"] == []


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "field"),
    [
        ("GET", "/api/v1/runs", {"params": {"status": "SLEEPING"}}, 400, "status"),
        ("GET", "/api/v1/runs", {"params": {"page_size": "0"}}, 400, "page_size"),
        ("GET", "/api/v1/runs", {"params": {"page_size": "ten"}}, 400, "page_size"),
        ("GET", "/api/v1/runs", {"params": {"before": "yesterday"}}, 400, "before"),
        ("GET", "/api/v1/runs", {"params": {"after": "2026-13-01"}}, 400, "after"),
        ("GET", "/api/v1/runs", {"params": {"tenant": "Not A Tenant"}}, 400, "namespace.tenant"),
        ("GET", "/api/v1/runs", {"params": {"graph_id": "has space"}}, 400, "graph_id"),
        ("GET", "/api/v1/runs", {"params": {"page_token": "forged"}}, 400, "page_token"),
        ("GET", "/api/v1/runs", {"params": [("status", "RUNNING"), ("status", "FAILED")]}, 400, "status"),
        ("GET", "/api/v1/runs/a%00b", {}, 400, "run_id"),
        ("GET", "/api/v1/runs/nope", {}, 404, None),
        ("GET", "/api/v1/runs/nope/history", {}, 404, None),
        ("GET", "/api/v1/runs/nope/history", {"params": {"page_token": "²"}}, 400, "page_token"),
        ("GET", "/api/v1/runs/nope/export", {}, 404, None),
        ("GET", "/api/v1/graphs/nope/versions/1", {}, 404, None),
        ("GET", "/api/v1/graphs/nope/versions/one", {}, 400, "version"),
        ("GET", "/api/v1/agents", {"params": {"status": "ASLEEP"}}, 400, "status"),
        ("GET", "/api/v1/nothing-here", {}, 404, None),
        ("DELETE", "/api/v1/runs/nope", {}, 405, None),
        ("POST", "/api/v1/runs/nope/cancel", {"content": b"{}"}, 400, "content-type"),
        (
            "POST",
            "/api/v1/runs/nope/cancel",
            {"content": b"{", "headers": {"content-type": "application/json"}},
            400,
            "body",
        ),
        ("POST", "/api/v1/runs/nope/cancel", {"json": [1]}, 400, "body"),
        ("POST", "/api/v1/runs/nope/cancel", {"json": {"reason": 5}}, 400, "reason"),
        ("POST", "/api/v1/runs/nope/cancel", {"json": {"reason": "a\u0000b"}}, 400, "reason"),
        ("POST", "/api/v1/runs/nope/cancel", {"json": {"reason": "x" * 5000}}, 400, "reason"),
        ("POST", "/api/v1/runs/nope/cancel", {"json": {}}, 404, None),
        ("POST", "/api/v1/runs/nope/terminate", {"json": {}}, 404, None),
        ("POST", "/api/v1/runs/nope/signal", {"json": {"payload": 1}}, 400, "name"),
        ("POST", "/api/v1/runs/nope/signal", {"json": {"name": "go", "payload": 1}}, 404, None),
        (
            "POST",
            "/api/v1/runs/nope/signal",
            {"content": b'{"name": "go", "payload": NaN}', "headers": {"content-type": "application/json"}},
            400,
            "payload",
        ),
        ("POST", "/api/v1/runs/nope/fork", {"json": {"from_step": "one"}}, 400, "from_step"),
        ("POST", "/api/v1/runs/nope/fork", {"json": {"from_step": True}}, 400, "from_step"),
        ("POST", "/api/v1/runs/nope/fork", {"json": {"from_step": 0, "state": [1]}}, 400, "state"),
        ("POST", "/api/v1/runs/nope/fork", {"json": {"from_step": -1}}, 400, "from_step"),
        ("POST", "/api/v1/runs/nope/fork", {"json": {"from_step": 0}}, 404, None),
    ],
)
async def test_bad_input_is_a_400_naming_the_field_and_a_missing_thing_a_404(
    ui: Any, method: str, path: str, kwargs: dict[str, Any], status: int, field: str | None
):
    _, http, _ = ui
    answer = await http.request(method, path, **kwargs)
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) <= {"error", "field"}
    assert body.get("field") == field
    if field is not None:
        assert body["error"].startswith(f"{field}: ")
    assert "Traceback" not in answer.text
    assert "Error(" not in answer.text
    assert "Exception" not in answer.text
    assert answer.headers["content-security-policy"].startswith("default-src 'none'")


async def test_forking_a_step_that_does_not_exist_and_an_oversized_body(ui: Any):
    server, http, client = ui
    graph = waiting_graph(unique("fork"))
    async with serving(client, [graph]):
        handle = await client.start(graph, {})
        await wait_status(client, handle.run_id, cmo.RunStatus.WAITING)
    missing = await http.post(f"/api/v1/runs/{handle.run_id}/fork", json={"from_step": 7})
    assert missing.status_code == 400
    assert missing.json()["error"] == f"from_step: run '{handle.run_id}' has no step 7 (it has 1)"
    forked = await http.post(f"/api/v1/runs/{handle.run_id}/fork", json={"from_step": 0, "state": {"b": 2}})
    assert forked.status_code == 200
    assert forked.json()["created"] is True
    assert forked.json()["run"]["parent_run_id"] == handle.run_id
    huge = "x" * (server.engine.limits.max_payload_bytes * 3)
    too_big = await http.post(f"/api/v1/runs/{handle.run_id}/signal", json={"name": "go", "payload": huge})
    assert too_big.status_code == 413
    assert too_big.json()["error"].startswith("body: over the limit of ")
    cancelled = await http.post(f"/api/v1/runs/{handle.run_id}/cancel", json={"reason": "enough"})
    assert cancelled.json()["run"]["cancel_requested"] is True


async def test_queues_agents_and_namespaces(ui: Any):
    _server, http, client = ui
    graph = waiting_graph(unique("seen"))
    async with serving(client, [graph]):
        for _ in range(200):
            pollers = (await http.get("/api/v1/queues")).json()["pollers"]
            if pollers:
                break
            await asyncio.sleep(0.05)
        assert pollers[0]["task_queue"] == "default"
        assert f"{graph.graph_id}@1" in pollers[0]["graphs"]
        agents = (await http.get("/api/v1/agents", params={"kind": "worker"})).json()["agents"]
        assert any(f"graph:{graph.graph_id}@1" in a["capabilities"] for a in agents)
        assert all(a["status"] in ("STARTING", "HEALTHY") for a in agents)
    spaces = (await http.get("/api/v1/namespaces")).json()
    assert {"tenant": "default", "project": "default"} in spaces["namespaces"]
    assert spaces["patterns"] is None
    session = (await http.get("/api/v1/session")).json()
    assert session == {"auth": False, "subject": None, "scopes": [], "namespaces": []}
    page = await http.get("/")
    assert page.headers["content-type"].startswith("text/html")
    assert "/static/app.js" in page.text


async def test_graph_versions_count_their_runs_and_queues_their_ready_tasks(ui: Any):
    _server, http, client = ui
    graph = waiting_graph(unique("counted"))
    async with serving(client, [graph]):
        waiting = await client.start(graph, {})
        await wait_status(client, waiting.run_id, cmo.RunStatus.WAITING)
    await client.start(graph, {})  # no worker left: its first task stays ready
    graphs = (await http.get("/api/v1/graphs", params={"graph_id": graph.graph_id})).json()["graphs"]
    assert [g["runs"] for g in graphs] == [{"total": 2, "by_status": {"PENDING": 1, "WAITING": 1}}]
    queues = (await http.get("/api/v1/queues")).json()["queues"]
    (default,) = [q for q in queues if q["task_queue"] == "default"]
    assert default["ready"] == 1
    assert default["pollers"] >= 1  # the worker that served the graph, as last seen
    assert default["last_poll"] is not None
    elsewhere = (await http.get("/api/v1/queues", params={"tenant": "acme", "project": "web"})).json()
    assert elsewhere == {"queues": [], "pollers": []}


async def test_a_run_and_its_fork_with_an_edited_state_replay_through_their_graph(ui: Any):
    _server, http, client = ui
    graph = waiting_graph(unique("verified"))
    async with serving(client, [graph]):
        handle = await client.start(graph, {"a": 1})
        await wait_status(client, handle.run_id, cmo.RunStatus.WAITING)
        waiting = (await http.get(f"/api/v1/runs/{handle.run_id}/verify")).json()
        assert (waiting["ok"], waiting["steps"], waiting["divergence"]) == (True, 1, None)
        await handle.signal("go", {"ok": True})
        await wait_status(client, handle.run_id, cmo.RunStatus.COMPLETED)
        done = (await http.get(f"/api/v1/runs/{handle.run_id}/verify")).json()
        assert done == {
            "ok": True,
            "graph_id": graph.graph_id,
            "graph_version": 1,
            "steps": 2,
            "checks": ["numbering", "path", "edges", "state_hashes", "activities", "ending"],
            "divergence": None,
        }
        forked = (
            await http.post(f"/api/v1/runs/{handle.run_id}/fork", json={"from_step": 0, "state": {"edited": True}})
        ).json()["run"]
        fork = client.get_handle(forked["run_id"])
        await wait_status(client, fork.run_id, cmo.RunStatus.WAITING)
        await fork.signal("go", 2)
        await wait_status(client, fork.run_id, cmo.RunStatus.COMPLETED)
        replayed = (await http.get(f"/api/v1/runs/{fork.run_id}/verify")).json()
        assert (replayed["ok"], replayed["steps"]) == (True, 2)
    assert (await http.get("/api/v1/runs/nope/verify")).status_code == 404


async def test_a_large_answer_is_gzipped_for_a_client_that_asks(ui: Any):
    _server, http, client = ui
    graph = waiting_graph(unique("zipped"))
    await client.register_graph(graph)
    for i in range(30):
        await client.start(graph, {"note": "a state of some size " * 10}, run_id=f"zipped-{i}")
    plain = await http.get("/api/v1/runs", params={"page_size": 30}, headers={"Accept-Encoding": "identity"})
    zipped = await http.get("/api/v1/runs", params={"page_size": 30}, headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in plain.headers
    assert zipped.headers["content-encoding"] == "gzip"
    assert int(zipped.headers["content-length"]) < len(plain.content) / 3
    # httpx decodes it (progress left out: its summary says how long ago, which moves)
    assert [(r["run_id"], r["input"]) for r in zipped.json()["runs"]] == [
        (r["run_id"], r["input"]) for r in plain.json()["runs"]
    ]
    assert zipped.headers["x-content-type-options"] == "nosniff"  # the security headers still there
