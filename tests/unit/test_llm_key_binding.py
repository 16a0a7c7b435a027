"""Keys the server shares from its environment (TOOLSERVER_LLM_KEY_ENVS) go only to the endpoints they are bound
to: at start, at agent create and at run time, against a fake LLM endpoint on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from foundation.errors import UserError, ValidationFailed
from registry import Database, KeyStore
from sandbox.config import SandboxConfig
from sandbox.fake import FakeBackend
from sandbox.manager import SandboxManager
from tests.unit.outbound_upstream import LLM_KEYS_SEEN, Upstream, serve_upstream
from toolserver.config import Settings
from toolserver.http.app import build_services, create_app
from toolserver.nodes.local import LocalNodes
from toolserver.outbound.egress import EgressPolicy
from toolserver.runs.llm import KeyEndpoint, LLMPolicy, build_llm

SECRET = "sk-operator-shared-1234"


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with serve_upstream() as served:
        yield served


@pytest.fixture(autouse=True)
def shared_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHARED_LLM_KEY", SECRET)


def test_every_shared_key_needs_an_endpoint_at_start(tmp_path: Path) -> None:
    for bad, says in (
        ("OPENAI_API_KEY", "names no endpoint"),
        ("OPENAI_API_KEY=", "names no endpoint"),
        ("OK=api.openai.com,BARE", "'BARE' names no endpoint"),
        ("1BAD=api.openai.com", "not an environment variable name"),
        ("K=ftp://host", "not host, host:port"),
        ("K=https://host/v1", "not host, host:port"),
    ):
        with pytest.raises(UserError) as info:
            Settings(home=tmp_path, llm_key_envs=bad).llm_policy()
        assert "TOOLSERVER_LLM_KEY_ENVS" in info.value.message and says in info.value.message, bad
    from toolserver.serve.app import start_server

    with pytest.raises(UserError):  # refused before Ray or anything else starts
        start_server(Settings(home=tmp_path, llm_key_envs="OPENAI_API_KEY"))


def test_endpoint_forms() -> None:
    assert KeyEndpoint.parse("api.openai.com") == KeyEndpoint("api.openai.com", 443, "https")
    assert KeyEndpoint.parse("127.0.0.1:11434") == KeyEndpoint("127.0.0.1", 11434, None)
    assert KeyEndpoint.parse("http://llm.internal") == KeyEndpoint("llm.internal", 80, "http")
    assert KeyEndpoint.parse("[::1]:8000") == KeyEndpoint("::1", 8000, None)
    openai = KeyEndpoint.parse("api.openai.com")
    assert openai.admits("https://api.openai.com/v1") and openai.admits("https://API.openai.com.:443/v1")
    for elsewhere in (
        "http://api.openai.com/v1",  # the key in clear text
        "https://api.openai.com:8443/v1",
        "https://api.openai.com.evil.example/v1",
        "https://evil.example/api.openai.com/v1",
    ):
        assert not openai.admits(elsewhere), elsewhere
    assert KeyEndpoint.parse("127.0.0.1:11434").admits("http://127.0.0.1:11434/v1")


def test_a_bound_key_goes_only_to_its_endpoints() -> None:
    policy = LLMPolicy.from_setting(
        EgressPolicy.parse("*"), "SHARED_LLM_KEY=llm-a.example,SHARED_LLM_KEY=10.0.0.7:8000"
    )
    config = {"model": "m", "api_key_env": "SHARED_LLM_KEY"}
    for url in ("https://llm-a.example/v1", "http://10.0.0.7:8000/v1"):
        assert build_llm({**config, "base_url": url}, policy).api_key == SECRET  # type: ignore[attr-defined]
    with pytest.raises(ValidationFailed) as info:
        build_llm({**config, "base_url": "https://collector.example/v1"}, policy)
    assert info.value.field == "llm.api_key_env"
    assert "llm-a.example" in info.value.message and "collector.example" in info.value.message
    with pytest.raises(ValidationFailed):  # no base_url: the default endpoint, not bound either
        build_llm(config, policy)


async def _app(home: Path, upstream: Upstream, binding: str) -> tuple[dict[str, httpx.AsyncClient], Any]:
    settings = Settings(
        home=home,
        pool_size=0,
        egress_allow=f"127.0.0.1:{upstream.port},localhost:{upstream.port}",
        llm_key_envs=binding,
    )
    db = Database(settings.database)
    manager = SandboxManager(SandboxConfig(pool_size=0, node_id="n"), backend=FakeBackend("n"))
    transport = httpx.ASGITransport(app=create_app(build_services(settings, db, LocalNodes({"n": manager}))))
    clients = {}
    for namespace in ("team-a", "team-b"):
        _, secret = KeyStore(db).create(namespace, "k")
        clients[namespace] = httpx.AsyncClient(
            transport=transport, base_url="http://test", headers={"Authorization": f"Bearer {secret}"}
        )

    async def close() -> None:
        for client in clients.values():
            await client.aclose()
        await manager.shutdown()
        db.close()

    return clients, close


@pytest.fixture
async def bound(tmp_path: Path, upstream: Upstream) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    clients, close = await _app(tmp_path, upstream, f"SHARED_LLM_KEY=127.0.0.1:{upstream.port}")
    yield clients
    await close()


async def _run(client: httpx.AsyncClient, agent: str) -> dict[str, Any]:
    run = (await client.post("/v1/runs", json={"agent": agent, "task": "go"})).json()
    for _ in range(600):
        state: dict[str, Any] = (await client.get(f"/v1/runs/{run['id']}")).json()
        if state["status"] in ("succeeded", "failed"):
            return state
        await asyncio.sleep(0.05)
    raise AssertionError("the run did not finish")


async def test_agent_create_refuses_a_key_for_an_endpoint_it_is_not_bound_to(
    bound: dict[str, httpx.AsyncClient], upstream: Upstream
) -> None:
    a = bound["team-a"]
    llm = {"model": "m", "api_key_env": "SHARED_LLM_KEY", "max_retries": 0}
    seen = len(LLM_KEYS_SEEN)
    # Same server, reached by another name: the egress policy lets it through, the key's binding does not.
    elsewhere = {**llm, "base_url": f"http://localhost:{upstream.port}/llm-ok/v1"}
    refused = await a.post(
        "/v1/agents", json={"name": "leak", "system_prompt": "", "tools": [], "llm": elsewhere}
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["field"] == "llm.api_key_env"
    assert LLM_KEYS_SEEN[seen:] == []
    good = {**llm, "base_url": f"http://127.0.0.1:{upstream.port}/llm-ok/v1"}
    created = await a.post("/v1/agents", json={"name": "ok", "system_prompt": "", "tools": [], "llm": good})
    assert created.status_code == 201, created.text
    state = await _run(a, "ok")
    assert state["status"] == "succeeded", state
    assert LLM_KEYS_SEEN[seen:] == [f"Bearer {SECRET}"]


async def test_a_run_refuses_a_key_whose_binding_the_operator_changed(
    tmp_path: Path, upstream: Upstream
) -> None:
    first, close = await _app(tmp_path, upstream, f"SHARED_LLM_KEY=127.0.0.1:{upstream.port}")
    llm = {
        "model": "m",
        "api_key_env": "SHARED_LLM_KEY",
        "base_url": f"http://127.0.0.1:{upstream.port}/llm-ok/v1",
    }
    created = await first["team-a"].post(
        "/v1/agents", json={"name": "ok", "system_prompt": "", "tools": [], "llm": llm}
    )
    assert created.status_code == 201, created.text
    await close()
    # Restarted with the key bound elsewhere: the stored agent's next run must not send it.
    second, close = await _app(tmp_path, upstream, "SHARED_LLM_KEY=api.openai.com")
    try:
        client = second["team-a"]
        seen = len(LLM_KEYS_SEEN)
        state = await _run(client, "ok")
        assert state["status"] == "failed", state
        assert "only with https://api.openai.com:443" in state["error"]
        assert LLM_KEYS_SEEN[seen:] == []
    finally:
        await close()
