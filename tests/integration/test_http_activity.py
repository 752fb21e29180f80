"""HTTP requests as recorded activities, against a real local HTTP server that logs every request."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

import cmo
from cmo.testing import Replayer
from tests.integration.test_runs import serving, unique


class _Log(BaseHTTPRequestHandler):
    requests: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        type(self).requests.append({"path": self.path, "key": self.headers.get("Idempotency-Key"), "body": body})
        reply = json.dumps({"order": json.loads(body)["order"], "n": len(type(self).requests)}).encode()
        self.send_response(201)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[tuple[str, list[dict]]]:
    handler = type("Handler", (_Log,), {"requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler.requests
    finally:
        server.shutdown()
        server.server_close()


async def test_a_recorded_request_is_not_sent_again_on_retry_nor_on_replay(client: cmo.Client, http_server):
    url, requests = http_server
    graph: cmo.Graph[dict] = cmo.Graph(unique("http"))

    @graph.node(entry=True, retry=cmo.RetryPolicy(max_attempts=3, initial_interval=timedelta(milliseconds=20)))
    async def place(state, ctx):
        response = await ctx.http("POST", f"{url}/orders", json={"order": state["order"]})
        if ctx.attempt == 1:
            raise ConnectionError("crashed after the request")
        return cmo.NodeResult({**state, "status": response.status, "reply": response.json()})

    async with serving(client, [graph]):
        handle = await client.start(graph, {"order": "o-9"})
        result = await handle.result(timeout=20)

    assert result == {"order": "o-9", "status": 201, "reply": {"order": "o-9", "n": 1}}
    assert len(requests) == 1  # the retry returned the recorded response
    assert requests[0]["path"] == "/orders"
    assert json.loads(requests[0]["body"]) == {"order": "o-9"}
    assert len(requests[0]["key"]) == 64
    (step,) = await handle.history()
    (recorded,) = step.activities
    assert (recorded.kind, recorded.name, recorded.result["status"]) == ("http", "http.POST", 201)

    # Offline replay answers from the record: the server sees nothing more.
    report = await Replayer([graph]).replay(await client.export_history(handle.run_id))
    assert report.ok, report
    assert len(requests) == 1


async def test_a_network_error_is_retried_then_recorded(client: cmo.Client):
    graph: cmo.Graph[dict] = cmo.Graph(unique("down"))
    seen: list[str] = []

    @graph.node(entry=True)
    async def call(state, ctx):
        try:
            await ctx.http(
                "GET", "http://127.0.0.1:9/", timeout=timedelta(seconds=2),
                retry=cmo.RetryPolicy(max_attempts=2, initial_interval=timedelta(milliseconds=10)),
            )  # fmt: skip
        except cmo.errors.ActivityError as err:
            seen.append(err.type)
        return cmo.NodeResult({"failed": seen})

    async with serving(client, [graph]):
        result = await asyncio.wait_for((await client.start(graph, {})).result(timeout=20), 30)
    assert result == {"failed": ["ConnectError"]}
