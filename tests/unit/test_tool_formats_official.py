"""Our OpenAI and MCP tool listings, checked against the official `openai` and `mcp` packages' types."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter

from toolserver.tools.base import ToolSpec
from toolserver.tools.builtin import BUILTIN_TOOLS
from toolserver.tools.formats import render
from toolserver.tools.schema import derive_schema

openai_types = pytest.importorskip("openai.types.chat")
mcp_types = pytest.importorskip("mcp.types")

SOURCE = '''
def search(query: str, limit: int = 10, tags: list[str] | None = None) -> list[dict]:
    """Search documents.

    Args:
        query: words to look for
        limit: at most this many hits
        tags: only documents with all these tags
    """
    return []
'''


def _specs() -> list[ToolSpec]:
    derived = derive_schema(SOURCE)
    return [
        *BUILTIN_TOOLS,
        ToolSpec(
            name=derived.name, description=derived.description, kind="python", parameters=derived.parameters
        ),
    ]


def test_openai_listing_validates_as_chat_completion_tools():
    adapter = TypeAdapter(list[openai_types.ChatCompletionToolParam])
    tools = render(_specs(), "openai")
    validated = adapter.validate_python(tools, strict=True)
    assert [t["function"]["name"] for t in validated] == [s.name for s in _specs()]


def test_mcp_listing_validates_as_mcp_tools():
    tools = [mcp_types.Tool.model_validate(entry) for entry in render(_specs(), "mcp")]
    by_name = {t.name: t for t in tools}
    assert by_name["search"].input_schema["required"] == ["query"]
    assert mcp_types.ListToolsResult(tools=tools).tools[0].name == "shell"
