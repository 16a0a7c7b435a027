"""The E2B front in-process over a fake sandbox backend: keys, control API answers, tenancy, the 501 stand-in."""

from __future__ import annotations

import json
import sys
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from registry import Database, KeyStore
from sandbox.config import SandboxConfig
from sandbox.errors import InvalidPath
from sandbox.manager import SandboxManager
from tests.unit.test_pause import KeepingBackend
from toolserver.config import Settings
from toolserver.e2b import mount_e2b
from toolserver.e2b._interpreter import _end_lines, _event_lines
from toolserver.e2b._keys import as_e2b_key, from_e2b_key
from toolserver.e2b._paths import absolute, relative
from toolserver.e2b._views import TemplateMap
from toolserver.http.app import build_services, create_app
from toolserver.nodes.local import LocalNodes

pytest.importorskip("e2b", reason="needs the e2b extra")


@pytest.fixture
async def front(tmp_path):
    settings = Settings(home=tmp_path, pool_size=0, max_sessions_per_namespace=3)
    db = Database(settings.database)
    config = SandboxConfig(pool_size=0, node_id="node-a", paused_dir=str(tmp_path / "paused"))
    manager = SandboxManager(config, backend=KeepingBackend("node-a"))
    services = build_services(settings, db, LocalNodes({"node-a": manager}))
    _, key_a = KeyStore(db).create("team-a", "a")
    _, key_b = KeyStore(db).create("team-b", "b")
    transport = httpx.ASGITransport(app=create_app(services))
    clients = {
        name: httpx.AsyncClient(transport=transport, base_url="http://test/e2b", headers={"X-API-KEY": key})
        for name, key in (
            ("a", as_e2b_key(key_a)),
            ("raw", key_a),
            ("b", as_e2b_key(key_b)),
            ("bad", "e2b_00"),
        )
    }
    yield clients
    for client in clients.values():
        await client.aclose()
    await manager.shutdown()
    db.close()


def test_keys_round_trip_through_the_e2b_form() -> None:
    key = "tsk_AbC-_09xyz"
    alias = as_e2b_key(key)
    assert alias.startswith("e2b_") and all(c in "0123456789abcdef" for c in alias[4:])
    assert from_e2b_key(alias) == key and as_e2b_key(alias) == alias
    assert from_e2b_key(key) == key and from_e2b_key("e2b_zz") == "e2b_zz"


def test_templates_map_to_allowed_images() -> None:
    templates = TemplateMap("data=img:data", "img:default", ("img:default", "img:data", "img:other"))
    assert templates.image("base") == templates.image("code-interpreter-v1") == "img:default"
    assert templates.image("data") == "img:data" and templates.image("img:other") == "img:other"
    with pytest.raises(Exception, match="unknown template 'nope'"):
        templates.image("nope")


def test_paths_stay_in_the_workspace() -> None:
    assert relative("/workspace/a/b.txt") == "a/b.txt" == relative("a/b.txt")
    assert relative("/workspace") == "" and absolute("a") == "/workspace/a"
    with pytest.raises(InvalidPath, match="outside the workspace"):
        relative("/home/user/a.txt")


def test_kernel_events_become_code_interpreter_lines() -> None:
    def parsed(lines: list[bytes]) -> list[dict]:
        return [json.loads(line) for line in lines]

    assert parsed(_event_lines("stdout", "hi\n"))[0] | {"timestamp": 0} == {
        "type": "stdout",
        "text": "hi\n",
        "timestamp": 0,
    }
    png = parsed(_event_lines("display", {"mime": "image/png", "data": "iVBOR"}))[0]
    assert png == {"type": "result", "png": "iVBOR", "is_main_result": False}
    other = parsed(_event_lines("display", {"mime": "application/x-thing", "data": "x"}))[0]
    assert other["extra"] == {"application/x-thing": "x"}
    ok = parsed(_end_lines({"status": "ok", "result": "2"}, None))
    assert (
        ok[0] == {"type": "result", "text": "2", "is_main_result": True}
        and ok[-1]["type"] == "end_of_execution"
    )
    err = {"ename": "ValueError", "evalue": "bad", "traceback": ["line 1", "ValueError: bad"]}
    failed = parsed(_end_lines({"status": "error", "error": err}, None))[0]
    assert failed == {
        "type": "error",
        "name": "ValueError",
        "value": "bad",
        "traceback": "line 1\nValueError: bad",
    }
    gone = parsed(_end_lines(None, {"type": "sandbox_gone", "message": "it died"}))[0]
    assert gone["type"] == "error" and gone["value"] == "it died"


async def test_control_api_lifecycle_and_tenancy(front) -> None:
    a, b = front["a"], front["b"]
    created = await a.post(
        "/v2/sandboxes", json={"templateID": "base", "timeout": 120, "metadata": {"k": "v"}}
    )
    assert created.status_code == 201, created.text
    body = created.json()
    sid = body["sandboxID"]
    assert body["envdAccessToken"] == a.headers["X-API-KEY"] and body["envdVersion"]
    info = (await a.get(f"/sandboxes/{sid}")).json()
    assert info["metadata"] == {"k": "v"} and info["state"] == "running" and info["templateID"] == "base"
    assert [s["sandboxID"] for s in (await a.get("/v2/sandboxes", params={"metadata": "k=v"})).json()] == [
        sid
    ]
    assert (await a.get("/v2/sandboxes", params={"metadata": "k=w"})).json() == []
    assert (await front["raw"].get(f"/sandboxes/{sid}")).status_code == 200  # the key as it is works too
    assert (await b.get(f"/sandboxes/{sid}")).status_code == 404
    assert (await b.delete(f"/sandboxes/{sid}")).status_code == 404
    assert (await a.post(f"/sandboxes/{sid}/timeout", json={"timeout": 60})).status_code == 204
    too_long = await a.post(f"/sandboxes/{sid}/timeout", json={"timeout": 600})
    assert too_long.status_code == 400 and "idle TTL" in too_long.json()["message"]
    assert (await a.post(f"/sandboxes/{sid}/fork", json={})).status_code == 501
    assert (await a.delete(f"/sandboxes/{sid}")).status_code == 204
    assert (await a.get(f"/sandboxes/{sid}")).status_code == 404


async def test_pause_resume_and_connect_as_e2b_answers(front) -> None:
    a, b = front["a"], front["b"]
    sid = (await a.post("/v2/sandboxes", json={"templateID": "base", "timeout": 120})).json()["sandboxID"]
    assert (await b.post(f"/sandboxes/{sid}/pause", json={})).status_code == 404
    assert (await a.post(f"/sandboxes/{sid}/resume", json={})).status_code == 409  # running
    assert (await a.post(f"/sandboxes/{sid}/pause", json={"memory": True})).status_code == 204
    assert (await a.post(f"/sandboxes/{sid}/pause", json={})).status_code == 409  # paused already
    assert (await a.get(f"/sandboxes/{sid}")).json()["state"] == "paused"

    def listed(state: str) -> Any:
        return a.get("/v2/sandboxes", params={"state": state})

    assert [s["sandboxID"] for s in (await listed("paused")).json()] == [sid]
    assert (await listed("running")).json() == []
    assert (
        await a.post(f"/sandboxes/{sid}/resume", json={"timeout": 600})
    ).status_code == 400  # past its TTL
    assert (await a.get(f"/sandboxes/{sid}")).json()["state"] == "paused"  # the refused resume did nothing
    resumed = await a.post(f"/sandboxes/{sid}/resume", json={"timeout": 60})
    assert resumed.status_code == 201 and resumed.json()["sandboxID"] == sid
    assert (await a.get(f"/sandboxes/{sid}")).json()["state"] == "running"
    assert (await a.post(f"/sandboxes/{sid}/pause", json={})).status_code == 204
    connected = await a.post(f"/v2/sandboxes/{sid}/connect", json={"timeout": 60})
    assert connected.status_code == 201 and (await a.get(f"/sandboxes/{sid}")).json()["state"] == "running"
    assert (await a.post(f"/v2/sandboxes/{sid}/connect", json={})).status_code == 200  # running: as it is
    assert (await a.post(f"/sandboxes/{sid}/resume", json={"autoPause": True})).status_code == 501
    assert (await a.delete(f"/sandboxes/{sid}")).status_code == 204


async def test_errors_have_e2bs_shape(front) -> None:
    bad = await front["bad"].post("/v2/sandboxes", json={})
    assert bad.status_code == 401 and bad.json()["code"] == 401 and "invalid" in bad.json()["message"]
    unknown = await front["a"].post("/v2/sandboxes", json={"templateID": "gpu-xl"})
    assert unknown.status_code == 400 and "unknown template" in unknown.json()["message"]
    mcp = await front["a"].post("/v2/sandboxes", json={"mcp": {"x": {}}})
    assert mcp.status_code == 501


async def test_without_the_extra_the_front_answers_501(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "toolserver.e2b._app", None)  # as if e2b were not installed
    app = FastAPI()
    mount_e2b(app)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        reply = await client.post("/e2b/v2/sandboxes", json={})
    assert reply.status_code == 501 and "toolserver[e2b]" in reply.json()["message"]
