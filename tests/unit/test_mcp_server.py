"""`/mcp` in-process with the official MCP client over an ASGI transport, and MCP import through it."""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from typing import Any, get_args

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
from toolserver.tools.base import ToolKind

httpx2 = pytest.importorskip("httpx2")
mcp = pytest.importorskip("mcp")

from mcp import Client  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from mcp.server.mcpserver import MCPServer  # noqa: E402
from mcp.server.mcpserver.exceptions import ToolError  # noqa: E402

from toolserver.http.mcp_endpoint import MCP_PATH, McpEndpoint, mount_mcp  # noqa: E402
from toolserver.tools.mcp import McpToolRunner  # noqa: E402

needs_mcp_kind = pytest.mark.skipif(
    "mcp" not in get_args(ToolKind), reason='needs the "mcp" tool kind wired into toolserver.tools.base'
)


def _shell(command: str) -> ShellResult:
    return ShellResult(
        exit_code=0, output=f"ran: {command}", timed_out=False, truncated=False, cwd="/workspace"
    )


def _mounted(app: Any, path: str) -> bool:
    return any(getattr(route, "path", None) == path for route in app.routes)


@pytest.fixture
async def server(tmp_path):
    settings = Settings(home=tmp_path, max_body_mb=1, pool_size=0)
    db = Database(settings.database)
    backend = FakeBackend("node-a", sandbox_factory=lambda info: FakeSandbox(info, shell=_shell))
    manager = SandboxManager(SandboxConfig(pool_size=0, node_id="node-a"), backend=backend)
    holder: dict[str, Any] = {}

    def to_app(headers: Any, timeout_s: float) -> Any:
        """Outgoing MCP calls of imported tools go back into this same app."""
        return httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=holder["app"]), headers=dict(headers), timeout=timeout_s
        )

    services = build_services(
        settings, db, LocalNodes({"node-a": manager}), {"mcp": McpToolRunner(http_client=to_app)}
    )
    keys = KeyStore(db)
    secrets = {"a": keys.create("team-a", "a")[1], "b": keys.create("team-b", "b")[1]}
    app = create_app(services)
    if not _mounted(app, MCP_PATH):  # until create_app mounts it
        mount_mcp(app, services)
    if not _mounted(app, "/v1/tools/import/mcp"):
        from toolserver.http.routes import mcp_imports as mcp_import

        app.include_router(mcp_import.router)
    holder["app"] = app
    transport = httpx.ASGITransport(app=app)
    rest = {
        name: httpx.AsyncClient(
            transport=transport, base_url="http://test", headers={"Authorization": f"Bearer {key}"}
        )
        for name, key in secrets.items()
    }
    rest["anon"] = httpx.AsyncClient(transport=transport, base_url="http://test")
    yield {"app": app, "keys": secrets, "rest": rest, "sandboxes": backend.sandboxes, "services": services}
    for client in rest.values():
        await client.aclose()
    endpoint: McpEndpoint = app.state.mcp
    await endpoint.aclose()
    await manager.shutdown()
    db.close()


@asynccontextmanager
async def mcp_client(server: dict[str, Any], key: str, mode: str = "auto", headers: Any = None):
    http = httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=server["app"]),
        headers={"Authorization": f"Bearer {key}", **(headers or {})},
    )
    async with http, Client(streamable_http_client("http://test/mcp", http_client=http), mode=mode) as client:
        yield client


def _text(result: Any) -> str:
    assert len(result.content) == 1 and result.content[0].type == "text"
    return str(result.content[0].text)


def _json(result: Any) -> Any:
    return json.loads(_text(result))


ADD = '''
def add(a: int, b: int = 2) -> int:
    """Add two numbers."""
    return a + b
'''


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_lists_builtins_and_only_the_callers_own_tools(server, mode):
    created = await server["rest"]["a"].post(
        "/v1/tools", json={"name": "add", "kind": "python", "source": ADD}
    )
    assert created.status_code == 201, created.text
    async with mcp_client(server, server["keys"]["a"], mode) as a:
        listed = {tool.name: tool for tool in (await a.list_tools()).tools}
    assert {"shell", "python", "read_file", "add"} <= set(listed)
    assert listed["add"].description == "Add two numbers."
    assert listed["add"].input_schema == created.json()["parameters"]
    async with mcp_client(server, server["keys"]["b"], mode) as b:
        names_b = {tool.name for tool in (await b.list_tools()).tools}
    assert "shell" in names_b and "add" not in names_b


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_calls_a_builtin_in_the_namespace_sandbox(server, mode):
    async with mcp_client(server, server["keys"]["a"], mode) as a:
        result = await a.call_tool("shell", {"command": "ls -la"})
    assert result.is_error is False
    body = _json(result)
    assert body["output"] == "ran: ls -la" and body["exit_code"] == 0
    assert result.structured_content == body
    audit = (await server["rest"]["a"].get("/v1/audit")).json()["calls"]
    assert audit[0]["tool"] == "shell" and audit[0]["status"] == "ok"


async def test_bad_arguments_and_unknown_tools_come_back_as_tool_errors(server):
    async with mcp_client(server, server["keys"]["a"]) as a:
        invalid = await a.call_tool("shell", {"command": 5})
        unknown = await a.call_tool("no_such_tool", {})
    assert invalid.is_error is True
    error = _json(invalid)["error"]
    assert error["type"] == "validation_error" and error["field"] == "arguments.command"
    assert unknown.is_error is True and _json(unknown)["error"]["type"] == "not_found"
    for result in (invalid, unknown):
        assert "Traceback" not in _text(result)


async def test_session_header_picks_the_sandbox_and_respects_tenancy(server):
    sid = (await server["rest"]["a"].post("/v1/sessions", json={})).json()["id"]
    async with mcp_client(server, server["keys"]["a"], headers={"X-Toolserver-Session": sid}) as a:
        ok = await a.call_tool("shell", {"command": "pwd"})
    assert ok.is_error is False
    assert ("shell", "pwd") in server["sandboxes"][sid].calls
    async with mcp_client(server, server["keys"]["b"], headers={"X-Toolserver-Session": sid}) as b:
        denied = await b.call_tool("shell", {"command": "pwd"})
    assert denied.is_error is True and _json(denied)["error"]["type"] == "not_found"


async def test_missing_or_wrong_key_is_401_before_any_mcp_handling(server):
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "0"},
        },
    }
    accept = {"Accept": "application/json, text/event-stream"}
    missing = await server["rest"]["anon"].post("/mcp", json=initialize, headers=accept)
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "unauthorized"
    assert missing.headers["www-authenticate"].startswith("Bearer")
    wrong = await server["rest"]["anon"].post(
        "/mcp", json=initialize, headers={**accept, "Authorization": "Bearer tsk_nope"}
    )
    assert wrong.status_code == 401 and set(wrong.json()) == {"error"}
    ok = await server["rest"]["a"].post("/mcp", json=initialize, headers=accept)
    assert ok.status_code == 200 and ok.json()["result"]["serverInfo"]["name"] == "toolserver"
    with pytest.raises(Exception):  # noqa: B017 - the SDK wraps the 401 in its own error types
        async with mcp_client(server, "tsk_nope") as client:
            await client.list_tools()


@needs_mcp_kind
async def test_import_makes_a_remote_servers_tools_callable_here(server):
    # Tenant a imports tenant b's /mcp: b's builtins become a's b_* tools, called through b's sandbox.
    body = {
        "url": "http://test/mcp",
        "headers": {"Authorization": f"Bearer {server['keys']['b']}"},
        "prefix": "b_",
    }
    imported = await server["rest"]["a"].post("/v1/tools/import/mcp", json=body)
    assert imported.status_code == 201, imported.text
    names = {tool["name"] for tool in imported.json()["tools"]}
    assert {"b_shell", "b_python"} <= names
    shell = next(t for t in imported.json()["tools"] if t["name"] == "b_shell")
    assert shell["kind"] == "mcp" and shell["config"]["tool"] == "shell"
    called = await server["rest"]["a"].post("/v1/tools/b_shell/call", json={"arguments": {"command": "id"}})
    assert called.status_code == 200, called.text
    assert called.json()["ok"] is True and called.json()["result"]["output"] == "ran: id"
    b_calls = (await server["rest"]["b"].get("/v1/audit")).json()["calls"]
    assert b_calls[0]["tool"] == "shell"
    failed = await server["rest"]["a"].post("/v1/tools/b_shell/call", json={"arguments": {"command": 5}})
    assert failed.status_code == 422  # our own schema check, before anything is sent
    assert "b_shell" not in {t["name"] for t in (await server["rest"]["b"].get("/v1/tools")).json()["tools"]}


@needs_mcp_kind
async def test_import_refuses_clashes_and_unreachable_servers_and_writes_nothing(server):
    body = {"url": "http://test/mcp", "headers": {"Authorization": f"Bearer {server['keys']['b']}"}}
    clash = await server["rest"]["a"].post("/v1/tools/import/mcp", json=body)
    assert clash.status_code == 422 and "shell" in clash.json()["error"]["message"]
    denied = await server["rest"]["a"].post(
        "/v1/tools/import/mcp", json={"url": "http://test/mcp", "prefix": "x_"}
    )
    assert denied.status_code == 502 and denied.json()["error"]["type"] == "tool_call_failed"
    bad_url = await server["rest"]["a"].post("/v1/tools/import/mcp", json={"url": "file:///etc/passwd"})
    assert bad_url.status_code == 422
    tools = (await server["rest"]["a"].get("/v1/tools")).json()["tools"]
    assert not [t for t in tools if t["kind"] == "mcp"]


@needs_mcp_kind
async def test_an_import_that_leads_back_to_itself_ends_with_an_error(server):
    config = {"url": "http://test/mcp", "headers": {"Authorization": f"Bearer {server['keys']['a']}"}}
    server["services"].tools.tools.register(
        "team-a", "loop", kind="mcp", description="calls itself", config={**config, "tool": "loop"}
    )
    called = await server["rest"]["a"].post("/v1/tools/loop/call", json={"arguments": {}})
    assert called.status_code == 200, called.text
    error = called.json()["error"]
    assert called.json()["ok"] is False and error["error_type"] == "loop_detected"
    assert error["message"].startswith("the call passed 8 MCP proxies")


async def test_bridge_forwards_to_its_upstream_and_checks_its_token():
    from toolserver.cli.mcp import bridge_endpoint

    upstream_server = MCPServer("upstream")

    @upstream_server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @upstream_server.tool()
    def fail() -> str:
        """Always fails."""
        raise ToolError("nope")

    async with Client(upstream_server) as upstream:
        endpoint = bridge_endpoint(upstream, token="s3cret")
        try:
            http = httpx2.AsyncClient(
                transport=httpx2.ASGITransport(app=endpoint), headers={"Authorization": "Bearer s3cret"}
            )
            async with http, Client(streamable_http_client("http://bridge/", http_client=http)) as client:
                assert {t.name for t in (await client.list_tools()).tools} == {"add", "fail"}
                added = await client.call_tool("add", {"a": 2, "b": 40})
                assert added.structured_content == {"result": 42}
                failed = await client.call_tool("fail", {})
                assert failed.is_error is True and "nope" in _text(failed)
            anon = httpx.AsyncClient(transport=httpx.ASGITransport(app=endpoint), base_url="http://bridge")
            async with anon:
                assert (await anon.post("/", json={})).status_code == 401
        finally:
            await endpoint.aclose()


async def test_mcp_holds_no_stream_get_and_delete_are_405(server):
    """A GET would be the SDK's standalone SSE stream: a replica slot outside every stream cap, held for ever."""
    client = server["rest"]["a"]
    for method in ("GET", "DELETE", "PUT"):
        refused = await asyncio.wait_for(
            client.request(method, MCP_PATH, headers={"Accept": "text/event-stream"}), 10
        )
        assert refused.status_code == 405, (method, refused.text)
        assert refused.headers["Allow"] == "POST"
        assert refused.json()["error"]["type"] == "method_not_allowed"
    async with mcp_client(server, server["keys"]["b"]) as other:
        assert "shell" in {tool.name for tool in (await other.list_tools()).tools}
