"""MCP tool calls as recorded activities: `await ctx.mcp(server, "search", {"q": ...})` (`cmo-sdk[mcp]`).

A call opens a session to the server (a process started over stdio, or streamable HTTP), calls
the tool, and records what it answered: its content blocks, its structured content and whether
the tool reported an error. A retried step or a replay returns the record; the server is not
asked again. A tool that answers with an error (`is_error`) is a result like any other; a server
that cannot be reached or does not answer is the activity's failure, tried again per its policy.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from cmo._activity import Activity
from cmo._retry import RetryPolicy

__all__ = ["DEFAULT_MCP_RETRY", "McpServer", "McpToolResult", "mcp_activity"]

KIND_MCP = "mcp"
DEFAULT_MCP_RETRY = RetryPolicy(max_attempts=3, initial_interval=timedelta(milliseconds=500))
"""ctx.mcp's tries when it is given no policy: a server that did not start or answer is asked again."""


@dataclass(frozen=True, slots=True)
class McpServer:
    """Where an MCP server is: a command to start and talk to over stdio, or a streamable-HTTP URL."""

    command: str = ""
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    url: str = ""

    @classmethod
    def stdio(cls, command: str, *args: str, env: Mapping[str, str] | None = None) -> McpServer:
        """A server this worker starts for each call, speaking MCP on its stdin and stdout."""
        return cls(command=command, args=tuple(args), env=tuple(sorted((env or {}).items())))

    @classmethod
    def http(cls, url: str) -> McpServer:
        """A server reached over MCP's streamable HTTP transport at `url`."""
        return cls(url=url)

    def to_json(self) -> dict[str, Any]:
        """What identifies the server in the call's record (its request hash covers it)."""
        if self.url:
            return {"url": self.url}
        return {"command": self.command, "args": list(self.args), "env": dict(self.env)}


@dataclass(frozen=True, slots=True)
class McpToolResult:
    """A recorded tool call's answer: the same object on the first run, on a retry and on replay."""

    content: list[dict[str, Any]] = field(default_factory=list)
    """The content blocks as MCP sends them (`{"type": "text", "text": ...}`, images, resources)."""
    structured: Any = None
    """The tool's structured content, if it gave one."""
    is_error: bool = False
    """The tool reported an error (its content says what)."""

    @property
    def text(self) -> str:
        """The text blocks, joined by newlines."""
        return "\n".join(str(block.get("text", "")) for block in self.content if block.get("type") == "text")

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> McpToolResult:
        return cls(list(data.get("content", [])), data.get("structured"), bool(data.get("is_error", False)))


def mcp_activity(tool: str, *, retry: RetryPolicy | None) -> Activity[..., dict[str, Any]]:
    """The activity that calls `tool` on a server, tried per `retry` (`DEFAULT_MCP_RETRY`)."""

    async def call(server: dict[str, Any], tool: str, arguments: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        return await _call_tool(server, tool, arguments, timeout_s)

    return Activity(call, name=f"mcp.{_identifier(tool)}", retry=retry or DEFAULT_MCP_RETRY, kind=KIND_MCP)


async def _call_tool(server: dict[str, Any], tool: str, arguments: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    try:
        from mcp import ClientSession
    except ImportError as err:  # pragma: no cover - the extra is not installed
        raise RuntimeError('ctx.mcp needs the mcp package: pip install "cmo-sdk[mcp]"') from err
    async with _transport(server) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        result = await session.call_tool(tool, arguments, read_timeout_seconds=timedelta(seconds=timeout_s))
    return {
        "content": [block.model_dump(mode="json", exclude_none=True) for block in result.content],
        "structured": result.structuredContent,
        "is_error": bool(result.isError),
    }


def _transport(server: dict[str, Any]) -> Any:
    """The client transport's context manager, yielding (read, write) streams."""
    if server.get("url"):
        import contextlib

        from mcp.client.streamable_http import streamablehttp_client

        @contextlib.asynccontextmanager
        async def http() -> Any:
            async with streamablehttp_client(server["url"]) as (read, write, _):
                yield read, write

        return http()
    from mcp.client.stdio import StdioServerParameters, stdio_client

    parameters = StdioServerParameters(command=server["command"], args=server["args"], env=server["env"] or None)
    return stdio_client(parameters)


def _identifier(tool: str) -> str:
    """The tool's name as an activity-name part: printable, no white space, at most 100 characters."""
    return re.sub(r"[^\x21-\x7e]", "_", tool)[:100] or "_"
