"""The live routes over the fake sandbox, through the HTTP app: streamed calls, background processes, and ports,
which the fake has none of (501 `not_supported`, never a 500)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from registry import Database, KeyStore
from sandbox.base import SandboxInfo
from sandbox.config import SandboxConfig
from sandbox.fake import FakeBackend, FakeProgram, FakeSandbox
from sandbox.manager import SandboxManager
from sandbox.processes import ProcessLimits
from toolserver.config import Settings
from toolserver.http.app import build_services, create_app
from toolserver.nodes.local import LocalNodes


def _program(command: str) -> FakeProgram:
    return FakeProgram("", None) if command.startswith("serve") else FakeProgram(f"ran {command}\n", 3)


def _sandbox(info: SandboxInfo) -> FakeSandbox:
    return FakeSandbox(info, programs=_program, process_limits=ProcessLimits(max_running=2))


@pytest.fixture
async def a(tmp_path: Any) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(home=tmp_path, pool_size=0)
    db = Database(settings.database)
    manager = SandboxManager(
        SandboxConfig(pool_size=0, node_id="node-f"), backend=FakeBackend("node-f", sandbox_factory=_sandbox)
    )
    app = create_app(build_services(settings, db, LocalNodes({"node-f": manager})))
    _, key = KeyStore(db).create("team-f", "f")
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers) as client:
        yield client
    await manager.shutdown()
    db.close()


async def _session(a: httpx.AsyncClient) -> str:
    made = await a.post("/v1/sessions", json={})
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def _events(body: str) -> list[tuple[str, str]]:
    found = []
    for block in body.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines:
            found.append((lines["event"], lines.get("data", "")))
    return found


async def test_a_streamed_shell_call_answers_events_then_the_result(a: httpx.AsyncClient) -> None:
    sid = await _session(a)
    reply = await a.post(f"/v1/sessions/{sid}/shell", json={"command": "echo one", "stream": True})
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/event-stream")
    events = _events(reply.text)
    assert [e for e, _ in events] == ["stdout", "result"]
    assert json.loads(events[0][1])["data"] == "echo one"
    assert json.loads(events[1][1])["exit_code"] == 0


async def test_a_streamed_cell_answers_events_then_the_result(a: httpx.AsyncClient) -> None:
    sid = await _session(a)
    reply = await a.post(f"/v1/sessions/{sid}/python", json={"code": "1 + 1", "stream": True})
    assert reply.status_code == 200, reply.text
    assert [e for e, _ in _events(reply.text)] == ["result"]


async def test_background_processes_live_in_memory(a: httpx.AsyncClient) -> None:
    sid = await _session(a)
    done = await a.post(f"/v1/sessions/{sid}/processes", json={"command": "make"})
    assert done.status_code == 201, done.text
    pid = done.json()["pid"]
    out = (await a.get(f"/v1/sessions/{sid}/processes/{pid}/output", params={"offset": 0})).json()
    assert "".join(c["data"] for c in out["chunks"]) == "ran make\n"
    assert out["done"] is True and out["process"]["exit_code"] == 3
    server = (await a.post(f"/v1/sessions/{sid}/processes", json={"command": "serve 8080"})).json()
    assert server["status"] == "running"
    second = await a.post(f"/v1/sessions/{sid}/processes", json={"command": "serve 8081"})
    assert second.status_code == 201
    capped = await a.post(f"/v1/sessions/{sid}/processes", json={"command": "serve 8082"})
    assert capped.status_code == 429 and capped.json()["error"]["type"] == "process_limit"
    stopped = await a.post(f"/v1/sessions/{sid}/processes/{server['pid']}/signal", json={"signal": "TERM"})
    assert stopped.status_code == 200, stopped.text
    assert (stopped.json()["status"], stopped.json()["exit_code"]) == ("exited", 143)
    listed = (await a.get(f"/v1/sessions/{sid}/processes")).json()
    assert [p["pid"] for p in listed["processes"]] == [pid, server["pid"], second.json()["pid"]]
    missing = await a.get(f"/v1/sessions/{sid}/processes/999999")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "process_not_found"


async def test_ports_of_the_fake_are_not_supported_501(a: httpx.AsyncClient) -> None:
    sid = await _session(a)
    reply = await a.get(f"/v1/sessions/{sid}/ports/8080/")
    assert reply.status_code == 501, reply.text
    assert reply.json()["error"]["type"] == "not_supported"
    assert (await a.get(f"/v1/sessions/{sid}/processes")).status_code == 200  # the server answers on
