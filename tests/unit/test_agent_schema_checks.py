"""Agent runs check tools' schemas off the run scheduler's event loop, each schema once per process.

Before: `AgentLoop.config()` and `_run` each built an `ArgumentChecker` that ran the meta-schema and cost checks
of every tool on the event loop (about 1.9 s per 256 KB schema), and no memo kept the result.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from agent_core.llm.scripted import ScriptedModel, calls, reply
from agent_core.loop import AgentLoop, LoopSettings
from agent_core.tools import _VALIDATORS, ToolOutcome, openai_tool_schema

MAX_GAP_S = 2.0  # generous; the three checks below took about 5 s of the loop before


def big_schema(tag: str) -> dict[str, Any]:
    """About 250 KB of properties, each with a pattern: the costly kind to check."""
    properties = {f"{tag}{i}": {"type": "string", "pattern": f"^{tag}[a-z]{{1,8}}$"} for i in range(4000)}
    return {"type": "object", "properties": properties, "additionalProperties": True}


class BigTools:
    """Three tools with large distinct schemas; every call succeeds."""

    def __init__(self) -> None:
        self.schemas = [openai_tool_schema(f"t{i}", "", big_schema(f"t{i}x")) for i in range(3)]
        self.called: list[str] = []

    def tool_schemas(self) -> list[dict[str, Any]]:
        return self.schemas

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        self.called.append(name)
        return ToolOutcome.success("ok")


async def _largest_gap(stop: asyncio.Event) -> float:
    gap, last = 0.0, time.monotonic()
    while not stop.is_set():
        await asyncio.sleep(0.01)
        now = time.monotonic()
        gap, last = max(gap, now - last), now
    return gap


async def test_schema_checks_run_off_the_loop_once_per_schema():
    _VALIDATORS.cache_clear()
    tools = BigTools()
    turn = calls(*[(f"t{i}", {f"t{i}x0": f"t{i}xabc"}) for i in range(3)])
    loop = AgentLoop(ScriptedModel([turn, turn, reply("done")]), tools, LoopSettings(system_prompt="s"))
    loop.config()
    assert _VALIDATORS.cache_info().misses == 0  # naming the tools checks nothing
    stop = asyncio.Event()
    watcher = asyncio.create_task(_largest_gap(stop))
    state = await loop.start("go")
    stop.set()
    gap = await watcher
    assert state.status == "succeeded", state.error
    assert sorted(tools.called) == ["t0", "t0", "t1", "t1", "t2", "t2"]
    info = _VALIDATORS.cache_info()
    assert info.misses == 3 and info.hits == 0  # each schema checked once, then kept by this run's checker
    assert gap < MAX_GAP_S, gap
    again = AgentLoop(ScriptedModel([turn, reply("done")]), tools, LoopSettings(system_prompt="s"))
    assert (await again.start("go")).status == "succeeded"
    assert _VALIDATORS.cache_info().misses == 3  # a later run reuses the memo


async def test_a_bad_argument_is_still_sent_back_to_the_model():
    tools = BigTools()
    bad = calls(("t0", {"t0x0": "nope"}))
    loop = AgentLoop(ScriptedModel([bad, reply("gave up")]), tools, LoopSettings(system_prompt="s"))
    state = await loop.start("go")
    assert state.status == "succeeded" and tools.called == []
    assert any("does not match" in str(m.get("content")) for m in state.messages)
