"""MCP for real: the official client against `/mcp` of `toolserver up`, and a stdio MCP server imported here.

The import runs `toolserver tools import-mcp --command ...` as a real process: it starts the stdio server on
this machine, bridges it over loopback HTTP, and the server proxies calls of the imported tools to it.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.serverproc import ServerProcess, free_port
from toolserver.client import Client

httpx2 = pytest.importorskip("httpx2")
mcp = pytest.importorskip("mcp")

from mcp import Client as McpClient  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.ray]

STDIO_SERVER = Path(__file__).with_name("mcp_stdio_server.py")

WHERE = '''
def where(x: int) -> dict:
    """Say where this runs, and double x."""
    import os
    return {"uid": os.getuid(), "cwd": os.getcwd(), "double": 2 * x}
'''


@pytest.fixture(scope="module")
def bridge_port():
    """The stdio bridge's port: the one loopback port the server may reach (its default egress refuses loopback)."""
    return free_port()


@pytest.fixture(scope="module")
def server(tmp_path_factory, sandbox_image, bridge_port):
    env = {"TOOLSERVER_POOL_SIZE": "1", "TOOLSERVER_EGRESS_ALLOW": f"127.0.0.1:{bridge_port}"}
    proc = ServerProcess(tmp_path_factory.mktemp("tshome"), env=env)
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def keys(server):
    with Client(server.url, server.admin_key) as admin:
        return {name: admin.keys.create(f"mcp-{name}", name).key for name in ("a", "b")}


@pytest.fixture(scope="module")
def rest(server, keys):
    clients = {name: Client(server.url, key) for name, key in keys.items()}
    yield clients
    for client in clients.values():
        client.close()


@asynccontextmanager
async def mcp_client(server: ServerProcess, key: str, headers: dict[str, str] | None = None):
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}", **(headers or {})}, timeout=120)
    async with http, McpClient(streamable_http_client(server.url + "/mcp", http_client=http)) as client:
        yield client


def _json(result: Any) -> Any:
    return json.loads(result.content[0].text)


async def test_official_client_lists_and_calls_tools_including_a_sandboxed_python_tool(server, keys, rest):
    rest["a"].tools.register(name="where", kind="python", source=WHERE)
    async with mcp_client(server, keys["a"]) as a:
        listed = {tool.name: tool for tool in (await a.list_tools()).tools}
        assert {"shell", "python", "where"} <= set(listed)
        assert listed["where"].input_schema["required"] == ["x"]
        where = await a.call_tool("where", {"x": 21})
        shell = await a.call_tool("shell", {"command": "echo hi; id -u"})
        invalid = await a.call_tool("where", {"x": "twenty"})
    assert where.is_error is False, where.content
    assert _json(where) == {"uid": 1000, "cwd": "/workspace", "double": 42}
    assert shell.is_error is False and _json(shell)["output"].split() == ["hi", "1000"]
    assert invalid.is_error is True and _json(invalid)["error"]["type"] == "validation_error"
    async with mcp_client(server, keys["b"]) as b:
        assert "where" not in {tool.name for tool in (await b.list_tools()).tools}
        hidden = await b.call_tool("where", {"x": 1})
    assert hidden.is_error is True and _json(hidden)["error"]["type"] == "not_found"


async def test_session_header_runs_tools_in_that_session(server, keys, rest):
    with rest["a"].session() as session:
        sid = session.id
        async with mcp_client(server, keys["a"], {"X-Toolserver-Session": sid}) as a:
            wrote = await a.call_tool("shell", {"command": "echo marker > /workspace/from-mcp.txt"})
        assert wrote.is_error is False, wrote.content
        assert session.shell("cat /workspace/from-mcp.txt").output.strip() == "marker"
        async with mcp_client(server, keys["b"], {"X-Toolserver-Session": sid}) as b:
            denied = await b.call_tool("shell", {"command": "id"})
        assert denied.is_error is True and _json(denied)["error"]["type"] == "not_found"


def test_mcp_without_a_valid_key_is_401(server):
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream"}
    assert httpx.post(server.url + "/mcp", json=body, headers=headers).status_code == 401
    wrong = httpx.post(server.url + "/mcp", json=body, headers={**headers, "Authorization": "Bearer tsk_no"})
    assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "unauthorized"


def test_importing_from_the_servers_own_loopback_is_refused(server, keys):
    """The server's own /mcp on loopback is not the allowed bridge port: refused before any request is made."""
    headers = {"Authorization": f"Bearer {keys['a']}"}
    body = {
        "url": server.url + "/mcp",
        "headers": {"Authorization": f"Bearer {keys['a']}"},
        "prefix": "self_",
    }
    answer = httpx.post(server.url + "/v1/tools/import/mcp", json=body, headers=headers, timeout=60)
    assert answer.status_code == 403, answer.text
    assert answer.json()["error"]["type"] == "egress_denied"
    tools = httpx.get(server.url + "/v1/tools", headers=headers, timeout=30).json()["tools"]
    assert not [t for t in tools if t["name"].startswith("self_")]


def _first_line(proc: subprocess.Popen[str], timeout_s: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    if not ready:
        raise TimeoutError(f"no output in {timeout_s} s")
    return proc.stdout.readline()


async def test_import_of_a_stdio_server_makes_its_tools_callable_here(
    server, keys, rest, tmp_path, bridge_port
):
    env = {
        **os.environ,
        "TOOLSERVER_URL": server.url,
        "TOOLSERVER_API_KEY": keys["a"],
        "TOOLSERVER_HOME": str(tmp_path),
    }
    command = f"{sys.executable} {STDIO_SERVER}"
    bridge = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "toolserver.cli",
            "tools",
            "import-mcp",
            "--command",
            command,
            "--prefix",
            "ext_",
            "--bridge-port",
            str(bridge_port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        line = _first_line(bridge, 60)
        assert line, bridge.stderr.read() if bridge.stderr else ""
        announced = json.loads(line)
        assert sorted(announced["tools"]) == ["ext_add", "ext_greet", "ext_refuse"]
        assert announced["bridge"].startswith("http://127.0.0.1:")

        added = rest["a"].tools.call("ext_add", {"a": 2, "b": 40})
        assert added.ok is True and added.result == {"result": 42}
        refused = rest["a"].tools.call("ext_refuse", {"reason": "not today"})
        assert refused.ok is False and "not today" in refused.error["message"]
        tool = rest["a"].tools.get("ext_add")
        assert tool.kind == "mcp" and tool.config["tool"] == "add"
        assert "ext_add" not in {t["name"] for t in rest["b"].tools.list()}
        async with mcp_client(server, keys["a"]) as a:  # and both directions at once
            greeted = await a.call_tool("ext_greet", {"name": "Ada"})
        assert greeted.is_error is False and _json(greeted) == {"result": "hello, Ada"}
    finally:
        bridge.send_signal(signal.SIGTERM)
        try:
            code = bridge.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(bridge.pid, signal.SIGKILL)
            raise
    assert code == 0, bridge.stderr.read() if bridge.stderr else ""
    deadline = time.monotonic() + 10
    while "ext_add" in {t["name"] for t in rest["a"].tools.list()} and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "ext_add" not in {t["name"] for t in rest["a"].tools.list()}
