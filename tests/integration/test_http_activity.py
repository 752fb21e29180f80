"""HTTP requests as recorded activities, against a real local HTTP server that logs every request."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

import cmo
from cmo.testing import Replayer
from tests.integration.test_runs import serving, unique


class _Log(BaseHTTPRequestHandler):
    requests: ClassVar[list[dict[str, Any]]] = []

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


@contextlib.contextmanager
def serving_http(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A local HTTP server with this handler, on a thread; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def http_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    class Handler(_Log):
        requests: ClassVar[list[dict[str, Any]]] = []  # this server's log alone

    with serving_http(Handler) as url:
        yield url, Handler.requests


async def test_a_recorded_request_is_not_sent_again_on_retry_nor_on_replay(
    client: cmo.Client, http_server: tuple[str, list[dict[str, Any]]]
):
    url, requests = http_server
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("http"))

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
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("down"))
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


class _Scripted(BaseHTTPRequestHandler):
    """Answers GETs with the scripted replies in order (the last one again and again), logging each request."""

    replies: ClassVar[list[tuple[int, dict[str, str], bytes]]] = []
    requests: ClassVar[list[dict[str, Any]]] = []

    def do_GET(self) -> None:
        log = type(self).requests
        log.append({"at": time.monotonic(), "key": self.headers.get("Idempotency-Key")})
        status, headers, body = type(self).replies[min(len(log), len(type(self).replies)) - 1]
        self.send_response(status)
        for name, value in {"content-length": str(len(body)), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def scripted_server(*replies: tuple[int, dict[str, str], bytes]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local HTTP server answering with `replies` in order; yields its URL and its request log."""

    class Handler(_Scripted):
        pass

    Handler.replies, Handler.requests = list(replies), []  # this server's script and log alone
    with serving_http(Handler) as url:
        yield f"{url}/items", Handler.requests


BROKEN: tuple[int, dict[str, str], bytes] = (500, {}, b"database is down")
OK = (200, {"content-type": "application/json"}, b'{"items": 3}')
FAST = cmo.RetryPolicy(max_attempts=3, initial_interval=timedelta(milliseconds=20))


async def test_ctx_http_retries_server_errors_itself_before_it_records(client: cmo.Client):
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("http5xx"))

    @graph.node(entry=True, retry=cmo.RetryPolicy(max_attempts=5))
    async def fetch(state, ctx):
        response = await ctx.http("GET", state["url"])  # the default retry: 3 tries
        if response.status != 200:
            raise ConnectionError(f"answered {response.status}")
        return cmo.NodeResult({**state, "status": response.status, "items": response.json()["items"]})

    with scripted_server(BROKEN, BROKEN, OK) as (url, requests):
        async with serving(client, [graph]):
            handle = await client.start(graph, {"url": url})
            assert await handle.result(timeout=20) == {"url": url, "status": 200, "items": 3}
    assert len(requests) == 3
    assert len({r["key"] for r in requests}) == 1  # one call: one idempotency key on every try
    (step,) = await handle.history()
    assert step.attempt == 1  # the node never saw the 500s
    (recorded,) = step.activities
    assert recorded.result["status"] == 200


async def test_an_error_status_fails_the_node_and_each_node_retry_sends_the_request_again(client: cmo.Client):
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("http-down"))
    two_tries = cmo.RetryPolicy(max_attempts=2, initial_interval=timedelta(milliseconds=10))

    @graph.node(entry=True, retry=FAST)
    async def fetch(state, ctx):
        response = await ctx.http("GET", state["url"], raise_for_status=True, retry=two_tries)
        return cmo.NodeResult({**state, "status": response.status})

    with scripted_server(BROKEN) as (url, requests):
        async with serving(client, [graph]):
            with pytest.raises(cmo.errors.RunFailedError) as failed:
                await (await client.start(graph, {"url": url})).result(timeout=20)
    assert len(requests) == 6  # 3 node attempts x 2 tries of ctx.http: no attempt replayed the 500
    failure = failed.value.failure
    assert failure is not None
    assert (failure.type, failure.attempt) == ("HttpStatusError", 3)
    assert f"GET {url} answered 500: database is down" in failure.message


async def test_a_429_is_retried_after_the_delay_its_retry_after_header_asks_for(client: cmo.Client):
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("http429"))

    @graph.node(entry=True)
    async def fetch(state, ctx):
        response = await ctx.http("GET", state["url"], raise_for_status=True, retry=FAST)
        return cmo.NodeResult({**state, "status": response.status})

    with scripted_server((429, {"retry-after": "1"}, b"slow down"), OK) as (url, requests):
        async with serving(client, [graph]):
            assert await (await client.start(graph, {"url": url})).result(timeout=20) == {"url": url, "status": 200}
    assert len(requests) == 2
    assert requests[1]["at"] - requests[0]["at"] >= 0.95  # the header's second, not the policy's 20 ms


async def test_a_retry_after_beyond_the_limit_ends_the_tries_with_the_429(client: cmo.Client):
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("http429-long"))

    @graph.node(entry=True)
    async def fetch(state, ctx):
        response = await ctx.http("GET", state["url"], retry=FAST)
        return cmo.NodeResult({**state, "status": response.status, "wait": response.headers["retry-after"]})

    with scripted_server((429, {"retry-after": "3600"}, b"come back in an hour")) as (url, requests):
        async with serving(client, [graph]):
            result = await (await client.start(graph, {"url": url})).result(timeout=20)
    assert result == {"url": url, "status": 429, "wait": "3600"}  # returned, not raised: no raise_for_status
    assert len(requests) == 1


async def test_a_caught_status_error_is_replayed_exactly_from_its_record(client: cmo.Client):
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("http404"))

    @graph.node(entry=True)
    async def fetch(state, ctx):
        try:
            await ctx.http("GET", f"{state['url']}?token=secret", raise_for_status=True)
        except cmo.errors.HttpStatusError as err:
            seen = {"status": err.status, "method": err.method, "url": err.url, "body": err.body, "seq": err.seq}
        await ctx.sleep(0)  # the step resumes as attempt 2, which replays the error from its record
        return cmo.NodeResult({**state, "seen": seen, "attempt": ctx.attempt})

    with scripted_server((404, {}, b"no such item\n" + b"x" * 1000)) as (url, requests):
        async with serving(client, [graph]):
            handle = await client.start(graph, {"url": url})
            result = await handle.result(timeout=20)
    seen = result["seen"]
    assert (seen["status"], seen["method"], seen["url"], seen["seq"]) == (404, "GET", url, 0)  # no query: no secret
    assert seen["body"].startswith("no such item x")
    assert len(seen["body"]) < 300  # an excerpt, on one line
    assert result["attempt"] == 2
    assert len(requests) == 1  # a 404 is not tried again by ctx.http, nor by the resumed attempt

    report = await Replayer([graph]).replay(await client.export_history(handle.run_id))
    assert report.ok, report  # the error rebuilt from its record carries the same status, url and body
