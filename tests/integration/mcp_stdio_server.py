"""A tiny stdio MCP server (the official SDK's MCPServer) that the MCP import test bridges and imports."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("toolserver-test-stdio")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def greet(name: str) -> str:
    """Greet someone by name."""
    return f"hello, {name}"


@server.tool()
def refuse(reason: str) -> str:
    """Always fail with the given reason."""
    raise ToolError(reason)


if __name__ == "__main__":
    server.run()  # stdio
