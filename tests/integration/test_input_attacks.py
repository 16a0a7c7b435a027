"""Hostile input against a real `toolserver up` (Ray Serve, real HTTP): every attack answers 4xx quickly, and
another tenant's requests and /healthz answer while it runs.

The attacks: an OpenAPI document whose $refs fan out (JSON) or whose YAML aliases multiply, a catastrophic
`pattern` and `uniqueItems` over a large array in a tool's call, an exponential schema, an SOP transition regex,
a schema whose remote $ref would make the replica fetch a URL.
"""

from __future__ import annotations

import asyncio
import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.serverproc import ServerProcess
from tests.unit.test_openapi_limits import alias_yaml, fanout_document
from tests.unit.test_validation_limits import EVIL, EVIL_INPUT, SOURCE, anyof_chain, sop, tool
from toolserver.client import Client

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.ray]

QUICK_S = 15.0  # generous for a loaded machine: these answer in well under a second (the budgeted one ~2 s)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sandbox_image: str) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("attacks"), env={"TOOLSERVER_POOL_SIZE": "0"})
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def keys(server: ServerProcess) -> dict[str, str]:
    with Client(server.url, server.admin_key) as admin:
        return {name: admin.keys.create(f"attack-{name}", name).key for name in ("a", "b")}


async def _attack(
    server: ServerProcess, keys: dict[str, str], method: str, path: str, body: Any
) -> tuple[httpx.Response, float]:
    """Send the attack as tenant a; while it runs, tenant b lists its tools and /healthz answers."""
    async with (
        httpx.AsyncClient(
            base_url=server.url, headers={"Authorization": f"Bearer {keys['a']}"}, timeout=300
        ) as a,
        httpx.AsyncClient(
            base_url=server.url, headers={"Authorization": f"Bearer {keys['b']}"}, timeout=60
        ) as b,
    ):
        started = time.monotonic()
        attack = asyncio.create_task(a.request(method, path, json=body))
        await asyncio.sleep(0.05)
        health, listed = await asyncio.gather(b.get("/healthz"), b.get("/v1/tools"))
        assert health.status_code == 200 and listed.status_code == 200
        response = await attack
        elapsed = time.monotonic() - started
    assert elapsed < QUICK_S, elapsed
    error = response.json()["error"]
    assert error["type"] and error["message"]
    return response, elapsed


def _register(server: ServerProcess, keys: dict[str, str], body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        server.url + "/v1/tools", json=body, headers={"Authorization": f"Bearer {keys['a']}"}, timeout=60
    )


async def test_fanout_openapi_document_is_413(server, keys):
    response, _ = await _attack(
        server, keys, "POST", "/v1/tools/import/openapi", {"document": fanout_document(18)}
    )
    assert response.status_code == 413 and response.json()["error"]["field"] == "document"


async def test_yaml_alias_document_is_422(server, keys):
    response, _ = await _attack(server, keys, "POST", "/v1/tools/import/openapi", {"document": alias_yaml()})
    assert response.status_code == 422 and "alias" in response.json()["error"]["message"]


async def test_catastrophic_pattern_call_is_422(server, keys):
    assert _register(server, keys, tool("evil", {"type": "string", "pattern": EVIL})).status_code == 201
    response, _ = await _attack(server, keys, "POST", "/v1/tools/evil/call", {"arguments": {"x": EVIL_INPUT}})
    assert response.status_code == 422 and response.json()["error"]["field"] == "arguments.x"


async def test_unique_items_over_a_large_array_is_422(server, keys):
    assert _register(server, keys, tool("uniq", {"type": "array", "uniqueItems": True})).status_code == 201
    body = {"arguments": {"x": list(range(100_000))}}
    response, _ = await _attack(server, keys, "POST", "/v1/tools/uniq/call", body)
    assert response.status_code == 422 and response.json()["error"]["field"] == "arguments.x"


async def test_exponential_schema_stops_at_its_budget(server, keys):
    body = {"name": "chain", "kind": "python", "source": SOURCE, "parameters": anyof_chain(30)}
    assert _register(server, keys, body).status_code == 201
    response, _ = await _attack(server, keys, "POST", "/v1/tools/chain/call", {"arguments": {"x": 1}})
    assert response.status_code == 422 and response.json()["error"]["field"] == "arguments"


def test_backreference_pattern_is_refused_at_registration(server, keys):
    response = _register(server, keys, tool("backref", {"type": "string", "pattern": r"(a)\1"}))
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "parameters.properties.x.pattern"


async def test_sop_environment_regexes(server, keys):
    agents = [
        {"kind": "loop", "name": "writer", "role": "writer", "llm": {"scripted": [EVIL_INPUT, "a" * 40]}}
    ]
    bad = {"name": "bad", "agents": agents, "router": {"kind": "sop", **sop(r"(a)\1")}}
    response, _ = await _attack(server, keys, "POST", "/v1/environments", bad)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "router.states.draft.transitions[0].when.regex"
    headers = {"Authorization": f"Bearer {keys['a']}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=120) as a:
        created = await a.post(
            "/v1/environments", json={"name": "sop", "agents": agents, "router": {"kind": "sop", **sop(EVIL)}}
        )
        assert created.status_code == 201, created.text
        posted = await a.post(
            "/v1/environments/sop/messages", json={"content": "go", "recipients": ["writer"]}
        )
        assert posted.status_code == 201
        started = time.monotonic()
        stepped = await a.post("/v1/environments/sop/step", json={"steps": 4})
        assert stepped.status_code == 200 and time.monotonic() - started < QUICK_S
        history = (await a.get("/v1/environments/sop")).json()["history"]
        assert [m["content"] for m in history][1:] == [EVIL_INPUT, "a" * 40]
        await a.delete("/v1/environments/sop")


async def test_remote_refs_are_refused_and_never_fetched(server, keys):
    from tests.unit.test_schema_refs import _Recorder, hostile_schemas

    seen: list[str] = []
    handler = type("Handler", (_Recorder,), {"seen": seen})
    trap = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    trap.daemon_threads = True
    threading.Thread(target=trap.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{trap.server_address[1]}/latest/meta-data/"
        for i, schema in enumerate(hostile_schemas(url)[:2]):  # a property named default, $dynamicRef
            body = {"name": f"remote{i}", "kind": "python", "source": SOURCE, "parameters": schema}
            response, _ = await _attack(server, keys, "POST", "/v1/tools", body)
            assert response.status_code == 422 and response.json()["error"]["field"] == "parameters"
            assert "local $refs" in response.json()["error"]["message"]
    finally:
        trap.shutdown()
        trap.server_close()
    assert seen == []
