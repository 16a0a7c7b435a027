"""Bodies from tenant-chosen urls have a ceiling: http tools, MCP servers and LLM endpoints on a hostile loopback
upstream (tests/unit/outbound_upstream.py), through the in-process app where the route is the attack."""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from agent_core import LLMError
from registry import Database, KeyStore
from sandbox.config import SandboxConfig
from sandbox.fake import FakeBackend
from sandbox.manager import SandboxManager
from tests.unit.outbound_upstream import MIB, Upstream, serve_upstream
from toolserver.config import Settings
from toolserver.http.app import build_services, create_app
from toolserver.nodes.local import LocalNodes
from toolserver.outbound.body import DEFAULT_MAX_OUTBOUND_BYTES, ResponseTooLarge
from toolserver.outbound.egress import EgressPolicy
from toolserver.runs.llm import LLMPolicy, build_llm
from toolserver.tools import CallContext, HttpToolRunner, ToolCallFailed, ToolSpec
from toolserver.tools.mcp import MAX_IMPORTED_TOOLS, MAX_LIST_PAGES, McpToolRunner

CONTEXT = CallContext(namespace="team-a")


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with serve_upstream() as served:
        yield served


@pytest.fixture
def loopback(upstream: Upstream) -> EgressPolicy:
    return EgressPolicy.parse(f"127.0.0.1:{upstream.port}")


@pytest.fixture
async def app(tmp_path: Any, upstream: Upstream) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    settings = Settings(home=tmp_path, pool_size=0, egress_allow=f"127.0.0.1:{upstream.port}")
    db = Database(settings.database)
    manager = SandboxManager(SandboxConfig(pool_size=0, node_id="node-a"), backend=FakeBackend("node-a"))
    services = build_services(settings, db, LocalNodes({"node-a": manager}))
    transport = httpx.ASGITransport(app=create_app(services))
    clients = {}
    for namespace in ("team-a", "team-b"):
        _, key = KeyStore(db).create(namespace, "k")
        clients[namespace] = httpx.AsyncClient(
            transport=transport,
            base_url="http://test",
            headers={"Authorization": f"Bearer {key}"},
            timeout=120,
        )
    yield clients
    for client in clients.values():
        await client.aclose()
    await manager.shutdown()
    db.close()


async def _while_attack(attack: Any, other: Any, rounds: int = 5) -> tuple[Any, list[float]]:
    """Run `attack` while `other` is called `rounds` times; returns the attack's result and each call's time."""
    task = asyncio.ensure_future(attack)
    times = []
    for _ in range(rounds):
        started = time.monotonic()
        await other()
        times.append(time.monotonic() - started)
        if task.done():
            break
        await asyncio.sleep(0.02)
    return await task, times


# --- http tools ---------------------------------------------------------------------------------------------


async def test_registration_over_the_ceiling_is_422_naming_max_response_bytes(
    app: dict[str, httpx.AsyncClient], upstream: Upstream
) -> None:
    tool = {"name": "fetch", "kind": "http", "url": f"{upstream.url}/small"}
    over = await app["team-a"].post(
        "/v1/tools", json={**tool, "max_response_bytes": DEFAULT_MAX_OUTBOUND_BYTES + 1}
    )
    assert over.status_code == 422, over.text
    error = over.json()["error"]
    assert error["field"] == "max_response_bytes" and "TOOLSERVER_MAX_OUTBOUND_BODY_MB" in error["message"]
    at = await app["team-a"].post(
        "/v1/tools", json={**tool, "max_response_bytes": DEFAULT_MAX_OUTBOUND_BYTES}
    )
    assert at.status_code == 201, at.text


async def test_an_endless_body_ends_at_the_ceiling_and_other_tenants_keep_answering(
    app: dict[str, httpx.AsyncClient], upstream: Upstream
) -> None:
    a, b = app["team-a"], app["team-b"]
    big = {"name": "endless", "kind": "http", "url": f"{upstream.url}/endless"}
    assert (
        await a.post("/v1/tools", json={**big, "max_response_bytes": DEFAULT_MAX_OUTBOUND_BYTES})
    ).status_code == 201
    assert (
        await b.post("/v1/tools", json={"name": "small", "kind": "http", "url": f"{upstream.url}/small"})
    ).status_code == 201

    async def other() -> None:
        answer = await b.post("/v1/tools/small/call", json={"arguments": {}})
        assert answer.status_code == 200 and answer.json()["ok"] is True

    started = time.monotonic()
    response, times = await _while_attack(a.post("/v1/tools/endless/call", json={"arguments": {}}), other)
    elapsed = time.monotonic() - started
    body = response.json()
    assert response.status_code == 200 and body["ok"] is False
    assert body["error"]["error_type"] == "response_too_large"
    assert str(DEFAULT_MAX_OUTBOUND_BYTES) in body["error"]["message"]
    assert elapsed < 60  # stopped at the ceiling; the body never ends
    assert times and max(times) < 10  # the other tenant's calls answered meanwhile


async def test_a_tool_stored_above_a_lowered_ceiling_is_read_only_up_to_it(
    upstream: Upstream, loopback: EgressPolicy
) -> None:
    runner = HttpToolRunner(policy=loopback, max_body_bytes=MIB)
    tool = ToolSpec(
        name="e", kind="http", config={"url": f"{upstream.url}/endless", "max_response_bytes": 8 * MIB}
    )
    try:
        with pytest.raises(ResponseTooLarge) as info:
            await runner.run(tool, {}, CONTEXT)
    finally:
        await runner.aclose()
    assert info.value.error_type == "response_too_large" and info.value.max_bytes == MIB


async def test_a_gzip_bomb_is_inflated_in_small_pieces_and_cut_at_the_cap(
    upstream: Upstream, loopback: EgressPolicy
) -> None:
    runner = HttpToolRunner(policy=loopback)
    tool = ToolSpec(
        name="b", kind="http", config={"url": f"{upstream.url}/bomb", "max_response_bytes": 4 * MIB}
    )
    tracemalloc.start()
    try:
        with pytest.raises(ToolCallFailed) as info:
            await runner.run(tool, {}, CONTEXT)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        await runner.aclose()
    assert info.value.error_type == "response_too_large"
    # 4 MiB kept at most, in 64 KiB pieces; httpx alone inflates one 64 KiB read of this bomb into ~64 MiB.
    assert peak < 16 * MIB, peak


# --- MCP ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("wire", ["json", "sse"])
async def test_an_mcp_result_over_the_ceiling_fails_at_once(
    upstream: Upstream, loopback: EgressPolicy, wire: str
) -> None:
    runner = McpToolRunner(policy=loopback, max_body_bytes=MIB)
    tool = ToolSpec(
        name="h",
        kind="mcp",
        config={"url": f"{upstream.url}/pager-{wire}/mcp", "tool": "huge", "timeout_s": 60},
    )
    fine = ToolSpec(name="f", kind="mcp", config={"url": f"{upstream.url}/pager-{wire}/mcp", "tool": "fine"})
    assert await runner.run(fine, {}, CONTEXT) == "fine"
    started = time.monotonic()
    with pytest.raises(ResponseTooLarge) as info:
        await runner.run(tool, {}, CONTEXT)
    assert info.value.error_type == "response_too_large" and info.value.max_bytes == MIB
    assert time.monotonic() - started < 30  # at once, not after the 60 s read timeout


async def test_mcp_imports_that_page_forever_or_fan_out_are_refused(
    app: dict[str, httpx.AsyncClient], upstream: Upstream
) -> None:
    a, b = app["team-a"], app["team-b"]

    async def other() -> None:
        assert (await b.get("/v1/tools")).status_code == 200

    pager, times = await _while_attack(
        a.post("/v1/tools/import/mcp", json={"url": f"{upstream.url}/pager-json/mcp"}), other
    )
    assert pager.status_code == 422, pager.text
    assert f"{MAX_LIST_PAGES} pages" in pager.json()["error"]["message"]
    assert times and max(times) < 10
    fanout = await a.post("/v1/tools/import/mcp", json={"url": f"{upstream.url}/fanout-json/mcp"})
    assert fanout.status_code == 422, fanout.text
    assert f"over {MAX_IMPORTED_TOOLS} tools" in fanout.json()["error"]["message"]
    huge = await a.post("/v1/tools/import/mcp", json={"url": f"{upstream.url}/hugepage-sse/mcp"})
    assert huge.status_code == 502, huge.text
    assert huge.json()["error"]["error_type"] == "response_too_large"
    assert [
        t for t in (await a.get("/v1/tools")).json()["tools"] if t.get("kind") == "mcp"
    ] == []  # nothing written


# --- LLM endpoints ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "stream"), [("llm-huge", False), ("llm-stream", True)])
async def test_an_llm_answer_over_the_ceiling_is_an_llm_error(
    upstream: Upstream, loopback: EgressPolicy, path: str, stream: bool
) -> None:
    policy = LLMPolicy(egress=loopback, max_body_bytes=MIB)
    client = build_llm(
        {"base_url": f"{upstream.url}/{path}/v1", "model": "m", "stream": stream, "max_retries": 0}, policy
    )
    started = time.monotonic()
    try:
        with pytest.raises(LLMError) as info:
            await client.complete([{"role": "user", "content": "hi"}])
    finally:
        await client.aclose()
    assert f"over {MIB} bytes" in info.value.message and info.value.details["retryable"] is False
    assert time.monotonic() - started < 30


async def test_an_agent_run_against_a_huge_llm_answer_fails_and_others_keep_answering(
    app: dict[str, httpx.AsyncClient], upstream: Upstream
) -> None:
    a, b = app["team-a"], app["team-b"]
    agent = {
        "name": "greedy",
        "system_prompt": "",
        "tools": [],
        "llm": {"base_url": f"{upstream.url}/llm-huge/v1", "model": "m", "max_retries": 0},
    }
    assert (await a.post("/v1/agents", json=agent)).status_code == 201
    run = (await a.post("/v1/runs", json={"agent": "greedy", "task": "go"})).json()

    async def finished() -> dict[str, Any]:
        while True:
            state = (await a.get(f"/v1/runs/{run['id']}")).json()
            if state["status"] in ("succeeded", "failed"):
                return state  # type: ignore[no-any-return]
            await asyncio.sleep(0.05)

    async def other() -> None:
        assert (await b.get("/v1/tools")).status_code == 200

    state, times = await _while_attack(asyncio.wait_for(finished(), 120), other)
    assert state["status"] == "failed"
    assert f"over {DEFAULT_MAX_OUTBOUND_BYTES} bytes" in state["error"]
    assert times and max(times) < 10


async def test_the_operators_ceiling_reaches_http_tools(tmp_path: Any, upstream: Upstream) -> None:
    settings = Settings(
        home=tmp_path, pool_size=0, egress_allow=f"127.0.0.1:{upstream.port}", max_outbound_body_mb=1
    )
    db = Database(settings.database)
    manager = SandboxManager(SandboxConfig(pool_size=0, node_id="node-a"), backend=FakeBackend("node-a"))
    services = build_services(settings, db, LocalNodes({"node-a": manager}))
    _, key = KeyStore(db).create("team-a", "k")
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://test", headers={"Authorization": f"Bearer {key}"}
    ) as client:
        tool = {"name": "fetch", "kind": "http", "url": f"{upstream.url}/small"}
        over = await client.post("/v1/tools", json={**tool, "max_response_bytes": MIB + 1})
        assert over.status_code == 422, over.text
        assert over.json()["error"]["field"] == "max_response_bytes"
        assert (await client.post("/v1/tools", json={**tool, "max_response_bytes": MIB})).status_code == 201
    await manager.shutdown()
    db.close()


def test_environment_agents_read_their_llm_under_the_operators_ceiling(tmp_path: Any) -> None:
    from agent_core.environment import build_agent
    from toolserver.service.environments import EnvironmentManager

    manager = EnvironmentManager.from_settings(Settings(home=tmp_path, max_outbound_body_mb=2), use_ray=False)
    llm = {"base_url": "https://llm.example/v1", "model": "m"}
    agent = build_agent(
        {"kind": "loop", "name": "w", "role": "w", "llm": llm}, manager.agent_runtime("team-a")
    )
    assert agent.llm.max_response_bytes == 2 * MIB  # type: ignore[attr-defined]
