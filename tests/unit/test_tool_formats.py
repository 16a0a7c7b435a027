"""Rendering specs for clients: native, OpenAI `tools=`, MCP `tools/list`."""

from __future__ import annotations

import json

import pytest

from foundation.errors import ValidationFailed
from toolserver.tools import (
    FORMATS,
    ToolSpec,
    check_schema,
    derive_schema,
    render,
    to_mcp,
    to_native,
    to_openai,
)

DERIVED = derive_schema('def get_weather(city: str, days: int = 3):\n    """Weather for a city."""\n')
SPEC = ToolSpec(
    name="get_weather",
    description=DERIVED.description,
    kind="python",
    parameters=DERIVED.parameters,
    config={"source": "...", "function": "get_weather"},
    namespace="team-a",
    version=2,
)


def test_native_has_everything() -> None:
    assert to_native(SPEC) == {
        "name": "get_weather",
        "description": "Weather for a city.",
        "kind": "python",
        "parameters": DERIVED.parameters,
        "config": {"source": "...", "function": "get_weather"},
        "namespace": "team-a",
        "version": 2,
    }


def test_openai_function_tool_shape() -> None:
    entry = to_openai(SPEC)
    assert entry == {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city.",
            "parameters": DERIVED.parameters,
        },
    }
    # Strict mode stays off: no "strict" key, and optional parameters keep their defaults.
    assert "strict" not in entry["function"]
    check_schema(entry["function"]["parameters"])


def test_mcp_tools_list_entry_shape() -> None:
    entry = to_mcp(SPEC)
    assert entry == {
        "name": "get_weather",
        "description": "Weather for a city.",
        "inputSchema": DERIVED.parameters,
    }
    assert entry["inputSchema"]["type"] == "object"


def test_no_format_leaks_config_but_native() -> None:
    assert "config" not in json.dumps(to_openai(SPEC))
    assert "source" not in json.dumps(to_mcp(SPEC))


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_render_dispatches_and_keeps_order(name: str) -> None:
    other = ToolSpec(name="b-tool", description="B")
    rendered = render([SPEC, other], name)
    assert rendered == [FORMATS[name](SPEC), FORMATS[name](other)]
    json.dumps(rendered)


def test_render_defaults_to_native_and_accepts_any_iterable() -> None:
    assert render(iter([SPEC])) == [to_native(SPEC)]
    assert render([], "mcp") == []


@pytest.mark.parametrize("bad", ["yaml", "OpenAI", "", None])
def test_unknown_format_is_a_validation_error(bad: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        render([SPEC], bad)
    assert info.value.field == "format"
    assert "native, openai, mcp" in info.value.message
