"""Render tool specs for clients: our native form, OpenAI `tools=[...]` entries, MCP `tools/list` entries."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from foundation.errors import ValidationFailed
from toolserver.tools.base import ToolSpec

__all__ = ["FORMATS", "render", "to_mcp", "to_native", "to_openai"]


def to_native(spec: ToolSpec) -> dict[str, Any]:
    """Everything the registry knows about a tool, as JSON."""
    return {
        "name": spec.name,
        "description": spec.description,
        "kind": spec.kind,
        "parameters": spec.parameters,
        "config": spec.config,
        "namespace": spec.namespace,
        "version": spec.version,
    }


def to_openai(spec: ToolSpec) -> dict[str, Any]:
    """An entry for the OpenAI client's `tools=` (function calling, strict mode off)."""
    return {
        "type": "function",
        "function": {"name": spec.name, "description": spec.description, "parameters": spec.parameters},
    }


def to_mcp(spec: ToolSpec) -> dict[str, Any]:
    """An entry of an MCP `tools/list` result."""
    return {"name": spec.name, "description": spec.description, "inputSchema": spec.parameters}


FORMATS: dict[str, Callable[[ToolSpec], dict[str, Any]]] = {
    "native": to_native,
    "openai": to_openai,
    "mcp": to_mcp,
}


def render(specs: Iterable[ToolSpec], format: str = "native") -> list[dict[str, Any]]:
    """Every spec in `format` ("native", "openai" or "mcp")."""
    try:
        convert = FORMATS[format]
    except (KeyError, TypeError):
        raise ValidationFailed(
            f"unknown tool format {format!r}; expected one of {', '.join(FORMATS)}", field="format"
        ) from None
    return [convert(spec) for spec in specs]
