"""The tool server for real: `toolserver up` on Ray Serve, real HTTP, real Docker, a SQLite file.

One server process serves the module; the last tests crash and restart it to check persistence.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Header, Request, Response

from registry import Database, SessionStore
from tests.integration.serverproc import ServerProcess, free_port
from toolserver import api
from toolserver.client import ApiError, AsyncClient, Client, Session

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.ray]


@pytest.fixture(scope="module")
def server(tmp_path_factory, sandbox_image, upstream):
    home = tmp_path_factory.mktemp("tshome")
    # Loopback is closed to tools by default; the test upstream's one port is opened, nothing else.
    env = {
        "TOOLSERVER_POOL_SIZE": "1",
        "TOOLSERVER_MAX_FILE_MB": "2",
        "TOOLSERVER_EGRESS_ALLOW": httpx.URL(upstream).netloc.decode(),
    }
    proc = ServerProcess(home, env=env)
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def admin(server):
    with Client(server.url, server.admin_key) as client:
        yield client


@pytest.fixture(scope="module")
def tenants(server, admin):
    keys = {name: admin.keys.create(f"team-{name}", name).key for name in ("a", "b")}
    clients = {name: Client(server.url, key) for name, key in keys.items()}
    yield clients
    for client in clients.values():
        client.close()


@pytest.fixture(scope="module")
def upstream():
    """A loopback HTTP service for http and OpenAPI tools."""
    app = FastAPI()

    @app.get("/weather/{city}")
    async def weather(city: str, units: str = "metric", x_api_key: str | None = Header(None)) -> dict:
        return {"city": city, "units": units, "key_seen": x_api_key}

    @app.post("/echo")
    async def echo(request: Request) -> dict:
        return {"received": await request.json()}

    @app.get("/fail")
    async def fail() -> dict:
        raise ValueError("upstream broke")

    @app.get("/redirect")
    async def redirect(to: str) -> Response:
        return Response(status_code=307, headers={"Location": to})

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(100):
        if srv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


def test_health_reports_nodes_and_pool(server):
    health = httpx.get(server.url + "/healthz").json()
    assert health["status"] == "ok"
    assert health["ray_nodes"] == 1 and len(health["nodes"]) == 1
    assert health["nodes"][0]["pool_size"] == 1


def test_missing_and_wrong_keys_are_401(server):
    assert httpx.get(server.url + "/v1/tools").status_code == 401
    wrong = httpx.get(server.url + "/v1/tools", headers={"Authorization": "Bearer tsk_wrong"})
    assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "unauthorized"


def test_session_shell_keeps_state_and_survives_a_timeout(tenants, docker_engine):
    a = tenants["a"]
    session = a.session(ttl_s=600, keep=True)
    sid = session.id
    assert session.info.status == "running" and session.info.network == "none"
    assert a.attach(sid).info.id == sid
    assert sid in [s.id for s in a.sessions()]
    first = session.shell(
        "mkdir -p /workspace/w && cd /workspace/w && export GREETING=hi && f() { echo fn-$1; }"
    )
    assert first.exit_code == 0 and first.cwd == "/workspace/w"
    second = session.shell("echo $GREETING; f x; pwd")
    assert second.output.split() == ["hi", "fn-x", "/workspace/w"]
    slow = session.shell("sleep 30", timeout_s=1)
    assert slow.timed_out is True
    after = session.shell("echo $GREETING; exit 3")
    assert after.output.startswith("hi") and after.exit_code == 3
    labels = docker_engine.containers.list(filters={"label": f"toolserver.session={sid}"})[0].labels
    assert labels["toolserver.managed"] == "true"
    session.delete()
    with pytest.raises(ApiError) as gone:
        session.refresh()
    assert gone.value.status_code == 404
    assert docker_engine.containers.list(all=True, filters={"label": f"toolserver.session={sid}"}) == []


def test_python_state_timeout_rich_output_and_restart(tenants):
    with tenants["a"].session() as s:
        assert s.python("x = 20").status == "ok"
        assert s.python("x * 2 + 2").result == "42"
        timed = s.python("import time; time.sleep(30)", timeout_s=1)
        assert timed.status == "timeout"
        assert s.python("x").result == "20"
        plot = s.python("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()")
        pngs = [d for d in plot.display if d.mime == "image/png"]
        assert pngs and base64.b64decode(pngs[0].data).startswith(b"\x89PNG")
        err = s.python("1 / 0")
        assert err.status == "error" and err.error is not None and err.error.ename == "ZeroDivisionError"
        crashed = s.python("import os; os._exit(1)")
        assert crashed.status == "error" and crashed.error is not None and crashed.error.ename == "KernelDied"
        assert s.python("1 + 1").result == "2"  # a fresh kernel replaced the dead one
        s.python("y = 5")
        s.restart_python()
        gone = s.python("y").error
        assert gone is not None and gone.ename == "NameError"


def test_files_round_trip_and_traversal_is_refused(server, tenants):
    a = tenants["a"]
    with a.session() as s:
        sid = s.id
        blob = bytes(range(256)) * 100
        assert s.files.write("data/blob.bin", blob).size == len(blob)
        assert s.files.read("data/blob.bin") == blob
        assert [e.path for e in s.files.list("data")] == ["data/blob.bin"]
        assert "blob.bin" in s.shell("ls data").output
        headers = {"Authorization": f"Bearer {a.api_key}"}
        for path in ("..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "data%2F..%2F..%2F..%2Fetc%2Fshadow"):
            response = httpx.get(f"{server.url}/v1/sessions/{sid}/files/{path}", headers=headers)
            assert response.status_code in (400, 404), (path, response.status_code)
            assert "root:" not in response.text
        s.shell("ln -s /etc/passwd leak")
        with pytest.raises(ApiError) as refused:
            s.files.read("leak")
        assert refused.value.error_type == "invalid_path"
        too_big = httpx.put(
            f"{server.url}/v1/sessions/{sid}/files/big.bin", content=b"x" * (3 * 1024 * 1024), headers=headers
        )
        assert too_big.status_code == 413


def test_validation_bad_json_and_oversized_bodies(server, tenants):
    headers = {"Authorization": f"Bearer {tenants['a'].api_key}", "content-type": "application/json"}
    bad = httpx.post(f"{server.url}/v1/sessions", content=b"{nope", headers=headers)
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "bad_json"
    invalid = httpx.post(f"{server.url}/v1/sessions", json={"limits": {"pids": "many"}}, headers=headers)
    assert invalid.status_code == 422 and invalid.json()["error"]["field"] == "body.limits.pids"
    huge = httpx.post(f"{server.url}/v1/tools", content=b"[" * (100 * 1024 * 1024), headers=headers)
    assert huge.status_code == 413
    call = httpx.post(f"{server.url}/v1/tools/shell/call", json={"arguments": {"cmd": "ls"}}, headers=headers)
    assert call.status_code == 422 and call.json()["error"]["field"].startswith("arguments")


def test_python_tool_runs_in_the_callers_sandbox(tenants):
    a = tenants["a"]
    source = '''
def note(text: str, path: str = "note.txt") -> dict:
    """Write a note into the workspace and report its size.

    Args:
        text: what to write
        path: where, relative to the workspace
    """
    import os
    with open(path, "w") as fh:
        fh.write(text)
    return {"bytes": os.path.getsize(path), "uid": os.getuid()}
'''
    tool = a.tools.register(name="note", kind="python", source=source)
    assert tool.parameters["required"] == ["text"]
    assert tool.parameters["properties"]["path"]["description"] == "where, relative to the workspace"
    with a.session() as s:
        called = s.call_tool("note", {"text": "hello"})
        assert called.ok is True and called.result == {"bytes": 5, "uid": 1000}
        assert s.files.read("note.txt") == b"hello"
        without_session = a.tools.call("note", {"text": "tool sandbox"})
        assert without_session.ok is True
        failing = a.tools.register(
            name="boom", kind="python", source="def boom() -> int:\n    raise RuntimeError('nope')\n"
        )
        assert failing.name == "boom"
        result = s.call_tool("boom", {})
        assert result.ok is False and "nope" in result.error["message"]
        openai_tools = a.tools.list("openai")
        assert {
            "type": "function",
            "function": {"name": "note", "description": tool.description, "parameters": tool.parameters},
        } in openai_tools
        assert any(t["name"] == "note" for t in a.tools.list("mcp"))
        assert a.tools.search("write a note into the workspace", 3)[0]["name"] == "note"


def test_http_tool_and_openapi_import(tenants, upstream):
    a = tenants["a"]
    a.secrets.put("weather-key", "s3cret")
    a.tools.register(
        name="weather",
        kind="http",
        url=upstream + "/weather/{city}",
        method="GET",
        query=["units"],
        secret_headers={"X-Api-Key": "weather-key"},
        parameters={
            "type": "object",
            "properties": {"city": {"type": "string"}, "units": {"type": "string"}},
            "required": ["city"],
        },
    )
    result = a.tools.call("weather", {"city": "Paris", "units": "imperial"})
    assert result.ok is True
    assert result.result["body"] == {"city": "Paris", "units": "imperial", "key_seen": "s3cret"}
    document = {
        "openapi": "3.0.3",
        "info": {"title": "echo", "version": "1"},
        "servers": [{"url": upstream}],
        "paths": {
            "/echo": {
                "post": {
                    "operationId": "echoBody",
                    "summary": "Echo a JSON body",
                    "requestBody": {
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"word": {"type": "string"}},
                                    "required": ["word"],
                                }
                            }
                        }
                    },
                }
            },
            "/fail": {"get": {"operationId": "alwaysFails", "summary": "Fails"}},
        },
    }
    imported = a.tools.import_openapi(document)
    names = {t.name for t in imported}
    assert {"echoBody", "alwaysFails"} <= names
    echoed = a.tools.call("echoBody", {"word": "hi"})
    assert echoed.ok is True and echoed.result["body"] == {"received": {"word": "hi"}}
    failed = a.tools.call("alwaysFails", {})
    assert failed.ok is False and failed.error["status_code"] == 500


def test_tools_cannot_reach_the_servers_own_network(server, tenants, upstream):
    """An http tool aimed at the server's own API (or redirected there) is refused before any byte is sent."""
    a = tenants["a"]
    own = server.url + "/v1/keys"
    for name, url in (("own_api", own), ("metadata", "http://169.254.169.254/latest/meta-data/")):
        with pytest.raises(ApiError) as refused:  # a literal address is refused at registration
            a.tools.register(name=name, kind="http", url=url)
        assert refused.value.status_code == 422 and refused.value.field == "url", name
        assert "TOOLSERVER_EGRESS_ALLOW" in str(refused.value)
    by_name = f"http://localhost:{httpx.URL(server.url).port}/v1/keys"  # a name is checked at each call
    a.tools.register(name="own_by_name", kind="http", url=by_name, method="GET")
    a.tools.register(name="via_redirect", kind="http", url=upstream + "/redirect", follow_redirects=True)
    for name, arguments in (("own_by_name", {}), ("via_redirect", {"to": own})):
        with pytest.raises(ApiError) as denied:
            a.tools.call(name, arguments)
        assert denied.value.status_code == 403, name
        assert denied.value.error_type == "egress_denied", name
        assert "TOOLSERVER_EGRESS_ALLOW" in str(denied.value)
    # The allowed upstream still answers through the same redirect tool.
    followed = a.tools.call("via_redirect", {"to": upstream + "/weather/Oslo"})
    assert followed.ok is True and followed.result["body"]["city"] == "Oslo"
    assert httpx.get(server.url + "/healthz", timeout=10).status_code == 200


def test_deployment_tool_is_its_own_serve_application(admin, tenants):
    body = {
        "name": "count_words",
        "kind": "deployment",
        "import_path": "toolserver.examples.deployment_tools:word_count",
        "parameters": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
        "num_replicas": 1,
    }
    with pytest.raises(ApiError) as denied:
        tenants["a"].tools.register(**body)
    assert denied.value.status_code == 403
    admin.tools.register(**body)
    assert admin.tools.call("count_words", {"text": "one two three"}).result == {
        "words": 3,
        "characters": 13,
    }
    admin.tools.delete("count_words")
    with pytest.raises(ApiError):
        admin.tools.get("count_words")


def test_tenants_cannot_see_or_touch_each_other(tenants):
    a, b = tenants["a"], tenants["b"]
    with a.session() as mine:
        sid = mine.id
        a.tools.register(
            name="private_tool", kind="python", source="def private_tool() -> str:\n    return 'a'\n"
        )
        assert sid not in [s.id for s in b.sessions()]
        assert "private_tool" not in [t["name"] for t in b.tools.list()]
        # b cannot attach to a's session, so its handle is built from a's record: every call goes out as b.
        intruder = Session(b, mine.info, keep=True)
        for attempt in (
            lambda: b.attach(sid),
            lambda: intruder.shell("id"),
            lambda: intruder.python("1"),
            lambda: intruder.files.read("anything"),
            lambda: intruder.delete(),
            lambda: b.tools.call("private_tool", {}),
            lambda: b.tools.call("shell", {"command": "id"}, sid),
            lambda: b.tools.get("private_tool"),
            lambda: b.tools.delete("private_tool"),
        ):
            with pytest.raises(ApiError) as denied:
                attempt()
            assert denied.value.status_code == 404
        assert mine.shell("echo still-mine").output.strip() == "still-mine"
        audit_a, audit_b = a.audit(), b.audit()
        assert {c.namespace for c in audit_a} == {"team-a"} and {c.namespace for c in audit_b} == {"team-b"}
        assert not {c.id for c in audit_a} & {c.id for c in audit_b}
        assert {c.status for c in audit_b if c.tool == "private_tool"} == {"rejected"}


def test_concurrent_calls_on_one_session(server, tenants):
    with tenants["a"].session() as session:

        async def run() -> tuple[list[api.ShellResult], list[api.PythonResult]]:
            async with AsyncClient(server.url, tenants["a"].api_key) as client:
                s = await client.attach(session.id)
                shells = [s.shell(f"echo call-{i}") for i in range(16)]
                cells = [s.python(f"{i} * 3") for i in range(16)]
                results = await asyncio.gather(*shells, *cells)
                return results[:16], results[16:]

        shells, cells = asyncio.run(run())
        assert [r.output.strip() for r in shells] == [f"call-{i}" for i in range(16)]
        assert [r.result for r in cells] == [str(i * 3) for i in range(16)]


def test_metrics_count_requests(server):
    text = httpx.get(server.url + "/metrics").text
    assert (
        'toolserver_http_requests_total{method="POST",route="/v1/sessions/{session_id}/shell",status="200"}'
        in text
    )


def _cli(server, *args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TOOLSERVER_URL": server.url, "TOOLSERVER_API_KEY": key or server.admin_key}
    return subprocess.run(
        [sys.executable, "-m", "toolserver.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_cli_against_the_server(server, tmp_path):
    status = _cli(server, "status")
    assert status.returncode == 0 and json.loads(status.stdout)["status"] == "ok"
    key = json.loads(_cli(server, "keys", "create", "--namespace", "cli-team").stdout)["key"]
    created = _cli(server, "sessions", "create", key=key)
    sid = json.loads(created.stdout)["id"]
    assert _cli(server, "sessions", "exec", sid, "cd /tmp && export V=7", key=key).returncode == 0
    shown = _cli(server, "sessions", "exec", sid, "echo $V; pwd; exit 4", key=key)
    assert shown.stdout.split() == ["7", "/tmp"] and shown.returncode == 4
    source = tmp_path / "triple.py"
    source.write_text('def triple(x: int) -> int:\n    """Three times x."""\n    return 3 * x\n')
    registered = _cli(server, "tools", "register", "--kind", "python", "--file", str(source), key=key)
    assert registered.returncode == 0, registered.stderr
    called = _cli(server, "tools", "call", "triple", "--args", '{"x": 5}', "--session", sid, key=key)
    assert json.loads(called.stdout)["result"] == 15
    listed = json.loads(_cli(server, "tools", "list", "--format", "openai", key=key).stdout)
    assert any(t["function"]["name"] == "triple" for t in listed["tools"])
    denied = _cli(server, "keys", "create", "--namespace", "x", key=key)
    assert denied.returncode == 1 and "403" in denied.stderr
    assert _cli(server, "sessions", "rm", sid, key=key).returncode == 0


def test_restart_keeps_tools_keys_audit_and_live_sessions(server, tenants, docker_engine):
    a = tenants["a"]
    session = a.session(keep=True)
    sid = session.id
    session.shell("cd /tmp && export KEPT=yes")
    session.python("kept = 7")
    audit_before = len(a.audit())
    server.crash()
    server.start()
    with Client(server.url, a.api_key) as again:
        assert "note" in [t["name"] for t in again.tools.list()]
        assert len(again.audit()) >= audit_before
        kept = again.attach(sid)
        state = kept.shell("echo $KEPT; pwd")
        assert state.output.split() == ["yes", "/tmp"]
        assert kept.python("kept").result == "7"
        assert kept.refresh().status == "running"
        # Secrets are sealed in the database and still open after the restart (the key is in home/secrets.key).
        weather = again.tools.call("weather", {"city": "Rome"})
        assert weather.ok is True and weather.result["body"]["key_seen"] == "s3cret"
        with sqlite3.connect(server.home / "toolserver.db") as raw:
            stored = dict(
                raw.execute("SELECT name, value FROM secrets WHERE namespace = 'team-a'").fetchall()
            )
        assert stored["weather-key"].startswith("aesgcm1:") and "s3cret" not in stored["weather-key"]
        assert (server.home / "secrets.key").stat().st_mode & 0o777 == 0o600
        # Of the crashed server's node only re-attached live sessions remain (labels cannot change);
        # its warm-pool containers are gone.
        nodes = {n.node_id for n in again.health().nodes}
        instance = (server.home / "instance_id").read_text().strip()
        containers = docker_engine.containers.list(
            all=True, filters={"label": f"toolserver.instance={instance}"}
        )
        db = Database(f"sqlite:///{server.home / 'toolserver.db'}")
        try:
            live = {record.id for record in SessionStore(db).list_all_live()}
        finally:
            db.close()
        from_dead_node = [
            c.labels["toolserver.session"] for c in containers if c.labels["toolserver.node"] not in nodes
        ]
        assert sid in from_dead_node and set(from_dead_node) <= live, (from_dead_node, live)


def test_clean_stop_removes_every_sandbox(server, docker_engine):
    instance = (server.home / "instance_id").read_text().strip()
    assert docker_engine.containers.list(all=True, filters={"label": f"toolserver.instance={instance}"})
    server.stop()
    assert docker_engine.containers.list(all=True, filters={"label": f"toolserver.instance={instance}"}) == []
