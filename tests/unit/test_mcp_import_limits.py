"""An MCP import checks the remote server's schemas off the event loop, within one budget of bytes and time.

Before: `_specs` checked every listed schema on the ingress event loop: 256 tools of about 250 KB, at about
1.7 s each, froze it for minutes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import mcp_types as types

from foundation.schema.limits import MAX_EXPANDED_SCHEMA_BYTES
from tests.unit.test_schema_refs import server  # noqa: F401  # the in-process app with a fake remote server
from toolserver.tools import mcp as mcp_tools

QUICK_S = 10.0


def big_schema(tag: str, count: int = 3500) -> dict[str, Any]:
    """About 250 KB of properties with patterns, distinct per `tag` (so no memo helps)."""
    properties = {f"{tag}{i}": {"type": "string", "pattern": f"^{tag}[a-z]{{1,8}}$"} for i in range(count)}
    return {"type": "object", "properties": properties}


async def test_many_large_schemas_are_refused_by_their_total_size_at_once(server):  # noqa: F811
    server["remote"].tools = [types.Tool(name=f"t{i}", input_schema=big_schema(f"t{i}x")) for i in range(256)]
    started = time.monotonic()
    attack = asyncio.create_task(
        server["a"].post("/v1/tools/import/mcp", json={"url": "http://127.0.0.1:9/m"})
    )
    health = await server["b"].get("/healthz")
    assert health.status_code == 200
    response = await attack
    assert time.monotonic() - started < QUICK_S
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["field"] == "url" and str(MAX_EXPANDED_SCHEMA_BYTES) in error["message"]
    assert (await server["a"].get("/v1/tools")).json()["tools"] == (
        await server["b"].get("/v1/tools")
    ).json()["tools"]  # nothing was written


async def test_schema_checks_of_an_import_leave_the_loop_free(server, monkeypatch):  # noqa: F811
    """The first check is held until team-b has its answers: a loop blocked by it would never answer."""
    entered, release = threading.Event(), threading.Event()
    check = mcp_tools.check_schema

    def held_check(schema: dict[str, Any]) -> dict[str, Any]:
        if not entered.is_set():
            entered.set()
            release.wait(QUICK_S)
        return check(schema)

    monkeypatch.setattr(mcp_tools, "check_schema", held_check)
    server["remote"].tools = [types.Tool(name=f"t{i}", input_schema=big_schema(f"u{i}x")) for i in range(3)]
    attack = asyncio.create_task(
        server["a"].post("/v1/tools/import/mcp", json={"url": "http://127.0.0.1:9/m"})
    )
    try:
        assert await asyncio.to_thread(entered.wait, QUICK_S)  # the checks run on the import's thread ...
        health = await asyncio.wait_for(server["b"].get("/healthz"), QUICK_S)
        listed = await asyncio.wait_for(server["b"].get("/v1/tools"), QUICK_S)
        assert health.status_code == 200 and listed.status_code == 200
        assert not attack.done()  # ... while the loop answered others
    finally:
        release.set()
    response = await attack
    assert response.status_code == 201, response.text
    assert sorted(t["name"] for t in response.json()["tools"]) == ["t0", "t1", "t2"]
