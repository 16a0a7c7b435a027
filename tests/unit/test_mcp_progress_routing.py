"""Which `/mcp` requests get an event stream: a tools/call with a progress token, from a client that takes one.

In-process over the fake sandbox (its streamed shell gives the scripted output as one event), with the official
client in both protocol eras, and raw requests for the edges.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.unit.test_mcp_server import mcp_client, server

pytest.importorskip("mcp")

__all__ = ["server"]  # the fixture, shared with test_mcp_server

CALL = {
    "jsonrpc": "2.0",
    "id": 3,
    "method": "tools/call",
    "params": {"name": "shell", "arguments": {"command": "echo hi"}, "_meta": {"progressToken": "t1"}},
}


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_call_with_a_progress_callback_hears_the_output_first(server: Any, mode: str) -> None:
    heard: list[tuple[float, str | None]] = []

    async def progress(value: float, total: float | None, message: str | None) -> None:
        heard.append((value, message))

    async with mcp_client(server, server["keys"]["a"], mode) as a:
        result = await a.call_tool("shell", {"command": "echo hi"}, progress_callback=progress)
        plain = await a.call_tool("shell", {"command": "echo plain"})
    assert result.is_error is False, result.content
    assert json.loads(result.content[0].text)["output"] == "ran: echo hi"
    assert heard == [(1.0, "ran: echo hi")]
    assert json.loads(plain.content[0].text)["output"] == "ran: echo plain"


async def _post(server: Any, body: Any, accept: str) -> Any:
    headers = {"Accept": accept, "MCP-Protocol-Version": "2025-06-18"}
    return await server["rest"]["a"].post(
        "/mcp", content=json.dumps(body), headers={**headers, "Content-Type": "application/json"}
    )


async def test_only_a_tools_call_with_a_token_from_an_event_stream_client_is_streamed(server: Any) -> None:
    both = "application/json, text/event-stream"
    streamed = await _post(server, CALL, both)
    assert streamed.status_code == 200 and streamed.headers["content-type"].startswith("text/event-stream")
    assert '"notifications/progress"' in streamed.text and '"ran: echo hi"' in streamed.text
    json_only = await _post(server, CALL, "application/json")
    assert json_only.status_code == 200 and json_only.headers["content-type"].startswith("application/json")
    untokened = {**CALL, "params": {"name": "shell", "arguments": {"command": "echo hi"}}}
    plain = await _post(server, untokened, both)
    assert plain.headers["content-type"].startswith("application/json")
    for token in (True, None, {"x": 1}):
        odd = {**CALL, "params": {**CALL["params"], "_meta": {"progressToken": token}}}
        assert (await _post(server, odd, both)).headers["content-type"].startswith("application/json")


async def test_a_body_over_the_cap_is_refused_whatever_it_asks(server: Any) -> None:
    big = {**CALL, "params": {**CALL["params"], "arguments": {"command": "x" * (2 << 20)}}}
    refused = await _post(server, big, "application/json, text/event-stream")
    assert refused.status_code == 413, refused.text[:200]
