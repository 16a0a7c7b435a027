"""The HTTP app in-process: auth, tenancy, validation, size caps, tools — over a fake sandbox backend."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from registry import Database, KeyStore
from sandbox.base import ShellResult
from sandbox.config import SandboxConfig
from sandbox.fake import FakeBackend, FakeSandbox
from sandbox.manager import SandboxManager
from toolserver.config import Settings
from toolserver.http.app import build_services, create_app
from toolserver.nodes.local import LocalNodes


def _shell(command: str) -> ShellResult:
    return ShellResult(
        exit_code=0, output=f"ran: {command}", timed_out=False, truncated=False, cwd="/workspace"
    )


@pytest.fixture
async def server(tmp_path):
    settings = Settings(home=tmp_path, max_body_mb=1, pool_size=0, max_sessions_per_namespace=3)
    db = Database(settings.database)
    backend = FakeBackend("node-a", sandbox_factory=lambda info: FakeSandbox(info, shell=_shell))
    manager = SandboxManager(SandboxConfig(pool_size=0, node_id="node-a"), backend=backend)
    services = build_services(settings, db, LocalNodes({"node-a": manager}))
    _, admin_secret = KeyStore(db).create("ops", "admin", admin=True)
    _, key_a = KeyStore(db).create("team-a", "a")
    _, key_b = KeyStore(db).create("team-b", "b")
    app = create_app(services)
    transport = httpx.ASGITransport(app=app)
    clients = {}
    for name, key in (("admin", admin_secret), ("a", key_a), ("b", key_b), ("anon", None)):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        clients[name] = httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers)
    yield clients
    for client in clients.values():
        await client.aclose()
    await manager.shutdown()
    db.close()


async def test_missing_or_wrong_key_is_401(server):
    response = await server["anon"].get("/v1/sessions")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "unauthorized"
    wrong = await server["anon"].get("/v1/tools", headers={"Authorization": "Bearer tsk_nope"})
    assert wrong.status_code == 401


async def test_tenant_cannot_see_or_touch_another_tenants_session(server):
    created = await server["a"].post("/v1/sessions", json={})
    assert created.status_code == 201
    sid = created.json()["id"]
    assert [s["id"] for s in (await server["a"].get("/v1/sessions")).json()["sessions"]] == [sid]
    assert (await server["b"].get("/v1/sessions")).json()["sessions"] == []
    for method, path, body in (
        ("GET", f"/v1/sessions/{sid}", None),
        ("POST", f"/v1/sessions/{sid}/shell", {"command": "id"}),
        ("POST", f"/v1/sessions/{sid}/python", {"code": "1"}),
        ("GET", f"/v1/sessions/{sid}/files", None),
        ("DELETE", f"/v1/sessions/{sid}", None),
    ):
        response = await server["b"].request(method, path, json=body)
        assert response.status_code == 404, (method, path, response.text)
    still = await server["a"].post(f"/v1/sessions/{sid}/shell", json={"command": "echo hi"})
    assert still.status_code == 200 and still.json()["output"] == "ran: echo hi"


async def test_validation_errors_name_the_field(server):
    response = await server["a"].post("/v1/sessions", json={"limits": {"memory_mb": -5}})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "body.limits.memory_mb"
    response = await server["a"].post("/v1/sessions", json={"limits": {"memory_mb": 10**7}})
    assert response.status_code == 422
    assert response.json()["error"]["type"] == "limits_exceeded"


async def test_bad_json_is_400_and_oversized_body_is_413(server):
    bad = await server["a"].post(
        "/v1/sessions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "bad_json"
    big = await server["a"].post(
        "/v1/tools", content=b"x" * (2 * 1024 * 1024), headers={"content-type": "application/json"}
    )
    assert big.status_code == 413 and big.json()["error"]["type"] == "payload_too_large"


async def test_python_tool_schema_is_derived_and_listed_in_three_formats(server):
    source = '''
def add(a: int, b: int = 2) -> int:
    """Add two numbers.

    Args:
        a: the first number
        b: the second number
    """
    return a + b
'''
    created = await server["a"].post("/v1/tools", json={"name": "add", "kind": "python", "source": source})
    assert created.status_code == 201, created.text
    params = created.json()["parameters"]
    assert params["required"] == ["a"] and params["properties"]["b"]["default"] == 2
    openai = (await server["a"].get("/v1/tools", params={"format": "openai"})).json()["tools"]
    assert {
        "type": "function",
        "function": {"name": "add", "description": "Add two numbers.", "parameters": params},
    } in openai
    mcp = (await server["a"].get("/v1/tools", params={"format": "mcp"})).json()["tools"]
    assert any(t["name"] == "add" and t["inputSchema"] == params for t in mcp)
    # another tenant does not see it
    names_b = {t["name"] for t in (await server["b"].get("/v1/tools")).json()["tools"]}
    assert "add" not in names_b and "shell" in names_b
    assert (await server["b"].get("/v1/tools/add")).status_code == 404
    assert (await server["b"].delete("/v1/tools/add")).status_code == 404
    assert (await server["b"].post("/v1/tools/add/call", json={"arguments": {"a": 1}})).status_code == 404


async def test_tool_arguments_are_validated_before_anything_runs(server):
    sid = (await server["a"].post("/v1/sessions", json={})).json()["id"]
    response = await server["a"].post(
        "/v1/tools/shell/call", json={"arguments": {"command": 5}, "session_id": sid}
    )
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "arguments.command"
    ok = await server["a"].post(
        "/v1/tools/shell/call", json={"arguments": {"command": "ls"}, "session_id": sid}
    )
    body = ok.json()
    assert ok.status_code == 200 and body["ok"] is True and body["result"]["output"] == "ran: ls"
    audit = (await server["a"].get("/v1/audit")).json()["calls"]
    assert [c["status"] for c in audit[:2]] == ["ok", "rejected"]
    assert (await server["b"].get("/v1/audit")).json()["calls"] == []


async def test_search_ranks_by_name_and_description(server):
    await server["a"].post(
        "/v1/tools",
        json={
            "name": "weather",
            "kind": "http",
            "url": "https://weather.example/w",
            "description": "Current weather for a city",
        },
    )
    results = (await server["a"].get("/v1/tools/search", params={"q": "weather city", "k": 3})).json()[
        "results"
    ]
    assert results[0]["name"] == "weather"


async def test_keys_need_admin(server):
    denied = await server["a"].post("/v1/keys", json={"namespace": "x"})
    assert denied.status_code == 403
    made = await server["admin"].post("/v1/keys", json={"namespace": "team-c"})
    assert made.status_code == 201
    key = made.json()["key"]
    who = await server["anon"].get("/v1/sessions", headers={"Authorization": f"Bearer {key}"})
    assert who.status_code == 200


async def test_builtin_tools_cannot_be_replaced_or_removed(server):
    response = await server["a"].post(
        "/v1/tools", json={"name": "shell", "kind": "http", "url": "http://127.0.0.1:9"}
    )
    assert response.status_code == 422
    assert (await server["a"].delete("/v1/tools/shell")).status_code == 403


async def test_error_body_shape_never_has_a_stack_trace(server):
    response = await server["a"].get("/v1/sessions/ses_doesnotexist")
    body = response.json()
    assert response.status_code == 404
    assert set(body) == {"error"} and {"type", "message"} <= set(body["error"])
    assert "Traceback" not in json.dumps(body)


async def test_http_tool_configs_are_checked_at_registration(server):
    ok = await server["a"].post(
        "/v1/tools",
        json={
            "name": "post_all",
            "kind": "http",
            "url": "https://api.example/x",
            "method": "POST",
            "body": "all",
        },
    )
    assert ok.status_code == 201, ok.text
    bad_method = await server["a"].post(
        "/v1/tools", json={"name": "fetch", "kind": "http", "url": "https://api.example/x", "method": "FETCH"}
    )
    assert bad_method.status_code == 422 and bad_method.json()["error"]["field"] == "config.method"
    inward = await server["a"].post(
        "/v1/tools", json={"name": "inward", "kind": "http", "url": "http://10.0.0.1/admin"}
    )
    assert inward.status_code == 422 and inward.json()["error"]["field"] == "url"
    names = {t["name"] for t in (await server["a"].get("/v1/tools")).json()["tools"]}
    assert "post_all" in names and not {"fetch", "inward"} & names


async def test_a_namespace_cannot_hold_more_sessions_than_its_cap(server):
    """Three live sessions per namespace here: the fourth is refused with 429, others are unaffected."""
    a, b = server["a"], server["b"]
    made = [(await a.post("/v1/sessions", json={})).json()["id"] for _ in range(3)]
    over = await a.post("/v1/sessions", json={})
    assert over.status_code == 429 and over.json()["error"]["type"] == "quota_exceeded"
    assert "TOOLSERVER_MAX_SESSIONS_PER_NAMESPACE" in over.json()["error"]["message"]
    assert (await b.post("/v1/sessions", json={})).status_code == 201  # another tenant is not affected
    # A burst cannot slip past the cap either.
    assert (await a.delete(f"/v1/sessions/{made[0]}")).status_code == 204
    burst = await asyncio.gather(*(a.post("/v1/sessions", json={}) for _ in range(5)))
    assert sorted(r.status_code for r in burst) == [201, 429, 429, 429, 429]
    live = (await a.get("/v1/sessions")).json()["sessions"]
    assert len(live) == 3


async def test_a_session_cannot_name_an_image_the_operator_did_not_list(server):
    for image in ("alpine:latest", "registry.example/private/secret-tool:1", "toolserver-sandbox:old"):
        refused = await server["a"].post("/v1/sessions", json={"image": image})
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["field"] == "image"
    assert (await server["a"].get("/v1/sessions")).json()["sessions"] == []
    assert (await server["b"].post("/v1/sessions", json={})).status_code == 201


async def test_an_open_network_is_refused_unless_the_operator_allows_it(server):
    refused = await server["a"].post("/v1/sessions", json={"network": "bridge"})
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["field"] == "network"
    assert "TOOLSERVER_ALLOW_OPEN_NETWORK" in refused.json()["error"]["message"]
    assert (await server["b"].post("/v1/sessions", json={})).status_code == 201


async def test_a_session_records_its_runtime_so_reading_it_asks_no_node(server, monkeypatch):
    created = (await server["a"].post("/v1/sessions", json={})).json()
    assert created["runtime"] in ("runc", "runsc")

    async def no_node(*args, **kwargs):
        raise AssertionError("GET /v1/sessions/{id} asked the node")

    app_services = server["a"]._transport.app.state.services  # type: ignore[attr-defined]
    monkeypatch.setattr(app_services.sessions, "_runtimes_on", no_node)
    shown = (await server["a"].get(f"/v1/sessions/{created['id']}")).json()
    assert shown["runtime"] == created["runtime"]
    listed = (await server["a"].get("/v1/sessions")).json()["sessions"]
    assert [s["runtime"] for s in listed] == [created["runtime"]]
