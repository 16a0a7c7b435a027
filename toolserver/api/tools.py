"""Tools: their specs, listings, search results and calls."""

from __future__ import annotations

from typing import Any, Literal

from toolserver.api.base import Reply

__all__ = ["Tool", "ToolCallResult", "ToolList", "ToolSearch", "ToolsImported", "WaitingHuman"]


class Tool(Reply):
    """A tool in the native format; `config` shows a tool's owner its settings, never secret values."""

    name: str
    description: str = ""
    kind: str
    parameters: dict[str, Any] = {}
    config: dict[str, Any] = {}
    namespace: str = ""
    version: int = 1


class ToolList(Reply):
    """`GET /v1/tools`: native entries, or OpenAI / MCP entries with `format=`."""

    tools: list[dict[str, Any]]


class ToolsImported(Reply):
    """The tools an OpenAPI or MCP import registered."""

    tools: list[Tool]


class ToolSearch(Reply):
    """`GET /v1/tools/search`: the best matches first."""

    results: list[dict[str, Any]]


class ToolCallResult(Reply):
    """A finished call: `ok` with `result`, or not with `error`."""

    ok: bool
    result: Any = None
    error: dict[str, Any] | str | None = None
    duration_ms: float | None = None


class WaitingHuman(Reply):
    """A call that asked a human: answer `request_id` at `/v1/human-requests/{id}/answer` (202)."""

    status: Literal["waiting_human"]
    request_id: str
