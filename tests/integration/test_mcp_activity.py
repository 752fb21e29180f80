"""MCP tool calls as recorded activities, against a real MCP server (FastMCP over stdio)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import cmo
from cmo.testing import Replayer
from cmo_server.app import CmoServer
from cmo_server.config import ServerConfig
from tests.integration.test_runs import serving, unique

SERVER_SCRIPT = Path(__file__).resolve().parents[1] / "support" / "mcp_server.py"


@pytest.fixture
async def server(server_config: ServerConfig) -> AsyncIterator[CmoServer]:
    """The suite's server with a lease that outlasts an MCP server's start on a loaded machine: a
    lapsed lease would make another attempt call the tool again, rightly, and this test is about
    a retry, not a lost lease."""
    limits = replace(server_config.limits, task_lease=timedelta(seconds=15))
    async with CmoServer.running(replace(server_config, limits=limits)) as running:
        yield running


def tools(marker: Path) -> cmo.McpServer:
    return cmo.McpServer.stdio(sys.executable, str(SERVER_SCRIPT), str(marker))


def asked(marker: Path) -> list[str]:
    return marker.read_text().split() if marker.exists() else []


async def test_a_tool_call_is_recorded_and_not_made_again_on_retry_nor_on_replay(client: cmo.Client, tmp_path: Path):
    marker = tmp_path / "asked"
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("mcp"))
    answered: list[int] = []  # the attempts the call returned to

    @graph.node(entry=True, retry=cmo.RetryPolicy(max_attempts=3, initial_interval=timedelta(milliseconds=20)))
    async def compute(state: dict[str, Any], ctx: cmo.NodeContext) -> cmo.NodeResult[dict[str, Any]]:
        result = await ctx.mcp(tools(marker), "add", {"a": state["a"], "b": state["b"]})
        answered.append(ctx.attempt)
        # The first attempt to get an answer crashes. (Not "attempt 1": on a loaded machine the
        # MCP server's start can outlast the test's 1 s lease, and attempt 2 is the one that calls.)
        if len(answered) == 1:
            raise ConnectionError("crashed after the call")
        return cmo.NodeResult({**state, "sum": result.text, "structured": result.structured, "error": result.is_error})

    async with serving(client, [graph]):
        handle = await client.start(graph, {"a": 2, "b": 3})
        result = await handle.result(timeout=60)

    assert result == {"a": 2, "b": 3, "sum": "5", "structured": {"result": 5}, "error": False}
    assert asked(marker) == ["add"], "the retried step called the tool again"
    (step,) = await handle.history()
    (recorded,) = step.activities
    assert len(answered) == 2
    assert (recorded.kind, recorded.name, recorded.attempt) == ("mcp", "mcp.add", answered[0])
    assert recorded.result["content"] == [{"type": "text", "text": "5"}]

    # Offline replay answers from the record: the server is not started again.
    report = await Replayer([graph]).replay(await client.export_history(handle.run_id))
    assert report.ok, report
    assert asked(marker) == ["add"]


async def test_a_tool_error_is_a_recorded_result_and_an_unreachable_server_a_failure(
    client: cmo.Client, tmp_path: Path
):
    marker = tmp_path / "asked"
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("mcp-errors"))

    @graph.node(entry=True)
    async def call(state: dict[str, Any], ctx: cmo.NodeContext) -> cmo.NodeResult[dict[str, Any]]:
        refused = await ctx.mcp(tools(marker), "refuse", {"reason": "no such selector"})
        missing = cmo.McpServer.stdio(str(tmp_path / "no-such-server"))
        try:
            await ctx.mcp(missing, "add", {"a": 1, "b": 1}, retry=cmo.RetryPolicy(max_attempts=2))
        except cmo.errors.ActivityError as err:
            unreachable = err.type
        return cmo.NodeResult({"refused": refused.is_error, "why": refused.text, "unreachable": unreachable})

    async with serving(client, [graph]):
        handle = await client.start(graph, {})
        result = await handle.result(timeout=60)

    assert result["refused"] is True
    assert "refused: no such selector" in result["why"]
    assert result["unreachable"]
    assert asked(marker) == ["refuse"]
