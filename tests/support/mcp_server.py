"""A real MCP server for the tests, over stdio: `python tests/support/mcp_server.py MARKER_FILE`.

Each tool call appends a line to MARKER_FILE, so a test can count how often the server was asked.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mcp.server.fastmcp import FastMCP

server = FastMCP("cmo-test-tools")
MARKER = Path(sys.argv[1])


def _asked(tool: str) -> None:
    with MARKER.open("a") as marker:
        marker.write(f"{tool}\n")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two numbers."""
    _asked("add")
    return a + b


@server.tool()
def refuse(reason: str) -> str:
    """Fail on purpose, as a tool does when it cannot do what it was asked."""
    _asked("refuse")
    raise ValueError(f"refused: {reason}")


if __name__ == "__main__":
    server.run("stdio")
