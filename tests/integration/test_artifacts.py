"""Artifacts through a real server and worker: put and get as recorded activities, and bad requests."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import grpc
import pytest

import cmo
from cmo.api.v1 import worker_service_pb2 as pb
from cmo.testing import Replayer
from cmo_server.app import CmoServer
from cmo_server.artifacts import Artifacts
from cmo_server.config import ServerConfig
from tests.integration.test_runs import serving, unique

CONTENT = os.urandom(3 * 1024 * 1024 + 17)  # more than one chunk each way
DIGEST = "sha256:" + hashlib.sha256(CONTENT).hexdigest()


@pytest.fixture
def put_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The run ids of the PutArtifact calls the server's artifact component served."""
    calls: list[str] = []
    real_put = Artifacts.put

    async def counting_put(self: Artifacts, namespace: Any, run_id: str, media_type: str, chunks: Any) -> Any:
        calls.append(run_id)
        return await real_put(self, namespace, run_id, media_type, chunks)

    monkeypatch.setattr(Artifacts, "put", counting_put)
    return calls


def report_graph() -> cmo.Graph[dict[str, Any]]:
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("artifacts"))
    retry = cmo.RetryPolicy(max_attempts=2, initial_interval=timedelta(milliseconds=20))

    @graph.node(entry=True, edges={"next": "read"}, retry=retry)
    async def write(state, ctx):
        ref = await ctx.artifacts.put(CONTENT, media_type="application/pdf")
        if ctx.attempt == 1:
            raise ConnectionError("crashed after the put")
        return cmo.NodeResult({"ref": ref}, next="next")

    @graph.node
    async def read(state, ctx):
        ref = cmo.ArtifactRef(**state["ref"])
        content = await ctx.artifacts.get(ref)
        again = await ctx.artifacts.get(ref.digest)
        return cmo.NodeResult({**state, "same": content == again == CONTENT, "size": len(content)})

    return graph


async def test_a_node_puts_an_artifact_and_a_later_node_gets_it_without_a_second_upload_on_retry(
    client: cmo.Client, put_calls: list[str]
):
    graph = report_graph()
    async with serving(client, [graph]):
        handle = await client.start(graph, {})
        result = await handle.result(timeout=30)

    ref = {"digest": DIGEST, "size": len(CONTENT), "media_type": "application/pdf"}
    assert result == {"ref": ref, "same": True, "size": len(CONTENT)}
    assert put_calls == [handle.run_id]  # the retry returned the recorded ref
    write, read = await handle.history()
    assert (write.attempt, [(a.kind, a.result) for a in write.activities]) == (2, [("artifact.put", ref)])
    recorded = [(a.kind, a.result) for a in read.activities]
    # A get records the ref, not the content: the log holds no copy of the artifact.
    assert recorded == [("artifact.get", {"digest": DIGEST, "size": len(CONTENT)})] * 2

    history = await client.export_history(handle.run_id)
    online = await Replayer([graph], client=client).replay(history)
    assert online.ok, online
    assert put_calls == [handle.run_id]  # replay uploads nothing
    offline = await Replayer([graph]).replay(history)
    assert [v.ok for v in offline.steps] == [True, False]
    assert "must be read from a server" in offline.steps[1].problem


async def test_getting_an_unknown_artifact_fails_the_activity_without_retrying(client: cmo.Client):
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("missing-artifact"))

    @graph.node(entry=True)
    async def read(state, ctx):
        try:
            await ctx.artifacts.get("sha256:" + "0" * 64)
        except cmo.errors.ActivityError as err:
            return cmo.NodeResult({"error": err.type})
        return cmo.NodeResult({"error": None})

    async with serving(client, [graph]):
        result = await (await client.start(graph, {})).result(timeout=30)
    assert result == {"error": "NOT_FOUND"}


# -- bad requests -------------------------------------------------------------------------------


async def rejected(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value.code(), caught.value.details() or ""


async def rejected_stream(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in call:
            pass
    return caught.value.code(), caught.value.details() or ""


def stream(*messages: pb.PutArtifactRequest) -> AsyncIterator[pb.PutArtifactRequest]:
    async def gen() -> AsyncIterator[pb.PutArtifactRequest]:
        for message in messages:
            yield message

    return gen()


async def test_bad_artifact_requests_get_statuses_naming_the_problem(server_config: ServerConfig):
    small = replace(server_config, blob=replace(server_config.blob, max_artifact_bytes=1000))
    async with CmoServer.running(small) as server, await cmo.Client.connect(f"127.0.0.1:{server.port}") as c:
        graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("holder"))
        graph.node(name="n", entry=True)(lambda state, ctx: cmo.NodeResult(state))
        await c.register_graph(graph)
        run_id = (await c.start(graph, {})).run_id
        stub = c.worker_stub

        code, details = await rejected(stub.PutArtifact(stream(pb.PutArtifactRequest(chunk=b"x"))))
        assert (code, "run_id" in details) == (grpc.StatusCode.INVALID_ARGUMENT, True)
        code, details = await rejected(stub.PutArtifact(stream()))
        assert (code, "run_id" in details) == (grpc.StatusCode.INVALID_ARGUMENT, True)
        code, details = await rejected(stub.PutArtifact(stream(pb.PutArtifactRequest(run_id="nope", chunk=b"x"))))
        assert (code, "nope" in details) == (grpc.StatusCode.NOT_FOUND, True)
        bad_type = pb.PutArtifactRequest(run_id=run_id, media_type="not a type", chunk=b"x")
        code, details = await rejected(stub.PutArtifact(stream(bad_type)))
        assert (code, "media_type" in details) == (grpc.StatusCode.INVALID_ARGUMENT, True)
        too_big = [pb.PutArtifactRequest(run_id=run_id, chunk=b"x" * 600), pb.PutArtifactRequest(chunk=b"y" * 600)]
        code, details = await rejected(stub.PutArtifact(stream(*too_big)))
        assert (code, "CMO_MAX_ARTIFACT_BYTES" in details) == (grpc.StatusCode.RESOURCE_EXHAUSTED, True)
        other_run = [pb.PutArtifactRequest(run_id=run_id, chunk=b"x"), pb.PutArtifactRequest(run_id="other")]
        code, details = await rejected(stub.PutArtifact(stream(*other_run)))
        assert (code, "run_id" in details) == (grpc.StatusCode.INVALID_ARGUMENT, True)

        for digest in ("", "sha256:ABC", "md5:" + "0" * 32, "sha256:" + "0" * 63):
            code, details = await rejected_stream(stub.GetArtifact(pb.GetArtifactRequest(digest=digest)))
            assert (code, "digest" in details) == (grpc.StatusCode.INVALID_ARGUMENT, True), digest
        code, _ = await rejected_stream(stub.GetArtifact(pb.GetArtifactRequest(digest="sha256:" + "0" * 64)))
        assert code == grpc.StatusCode.NOT_FOUND

        # At the limit it is stored, and an empty artifact is one too.
        for content in (b"z" * 1000, b""):
            put = await stub.PutArtifact(stream(pb.PutArtifactRequest(run_id=run_id, chunk=content)))
            assert (put.artifact.size, put.artifact.media_type) == (len(content), "application/octet-stream")
            chunks = [r.chunk async for r in stub.GetArtifact(pb.GetArtifactRequest(digest=put.artifact.digest))]
            assert b"".join(chunks) == content


async def test_a_payload_blob_is_not_an_artifact(client: cmo.Client, server_config: ServerConfig):
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("payload"))
    graph.node(name="n", entry=True)(lambda state, ctx: cmo.NodeResult(state))
    big = "p" * (server_config.blob.inline_threshold_bytes + 1)
    async with serving(client, [graph]):
        await (await client.start(graph, {"big": big})).result(timeout=30)
    field = '"' + big + '"'
    digest = "sha256:" + hashlib.sha256(field.encode()).hexdigest()  # the blob holding the field
    code, _ = await rejected_stream(client.worker_stub.GetArtifact(pb.GetArtifactRequest(digest=digest)))
    assert code == grpc.StatusCode.NOT_FOUND
