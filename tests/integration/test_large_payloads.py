"""Large states and activity results through a real server and worker: stored once, returned exactly."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import cmo
from cmo.errors import RpcError
from cmo_server.config import ServerConfig
from tests.integration.test_runs import serving, unique

MIB = 1024 * 1024
STEPS = 5


def blob_files(config: ServerConfig) -> list[Path]:
    root = Path(config.blob_root)
    return [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")] if root.exists() else []


def big_field() -> str:
    return "".join(chr(0x41 + i % 26) for i in range(MIB))  # 1 MiB, not one repeated byte


def counting_graph(steps: int = STEPS) -> cmo.Graph[dict[str, Any]]:
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("big"))

    @graph.node(entry=True, edges={"again": "step"})
    async def step(state, ctx):
        n = state["n"] + 1
        return cmo.NodeResult({**state, "n": n}, next="again" if n < steps else cmo.END, output={"n": n})

    return graph


async def test_an_unchanged_large_field_is_stored_once_and_every_state_comes_back_exactly(
    client: cmo.Client, server_config: ServerConfig
):
    big = big_field()
    graph = counting_graph()
    async with serving(client, [graph]):
        handle = await client.start(graph, {"big": big, "n": 0})
        result = await handle.result(timeout=60)

    assert result == {"big": big, "n": STEPS}
    steps = await handle.history()
    assert [s.state for s in steps] == [{"big": big, "n": i + 1} for i in range(STEPS)]
    assert [s.output for s in steps] == [{"n": i + 1} for i in range(STEPS)]
    info = await handle.describe()
    assert (info.input, info.result) == ({"big": big, "n": 0}, result)
    exported = await client.export_history(handle.run_id)
    assert exported.steps[-1].state == result

    # The input, five states and the result all carry the field: it is stored once.
    files = blob_files(server_config)
    assert len(files) == 1
    assert files[0].stat().st_size == len(json.dumps(big))


async def test_an_activity_result_above_the_threshold_is_replayed_exactly_on_retry(
    client: cmo.Client, server_config: ServerConfig
):
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("big-activity"))
    calls: list[int] = []
    report = "report line\n" * (server_config.blob.inline_threshold_bytes // 10)  # a string: one blob

    @cmo.activity
    async def fetch_report() -> str:
        calls.append(1)
        return report

    @graph.node(entry=True, retry=cmo.RetryPolicy(max_attempts=2, initial_interval=timedelta(milliseconds=20)))
    async def read(state, ctx):
        got = await ctx.activity(fetch_report)
        if ctx.attempt == 1:
            raise ConnectionError("crashed after the activity")
        return cmo.NodeResult({"length": len(got), "same": got == report})

    async with serving(client, [graph]):
        handle = await client.start(graph, {})
        assert await handle.result(timeout=30) == {"length": len(report), "same": True}

    assert len(calls) == 1  # the retry got the recorded result back with its task
    (step,) = await handle.history()
    assert step.activities[0].result == report
    assert len(blob_files(server_config)) == 1


async def test_a_lost_blob_behind_a_run_is_an_internal_error(client: cmo.Client, server_config: ServerConfig):
    graph = counting_graph(steps=1)
    async with serving(client, [graph]):
        handle = await client.start(graph, {"big": big_field(), "n": 0})
        await handle.result(timeout=30)
    for path in blob_files(server_config):
        path.unlink()

    with pytest.raises(RpcError) as caught:
        await handle.describe()
    assert caught.value.code == "INTERNAL"
    assert "see the server log" in caught.value.message
