"""Remote references in tenants' schemas: refused at registration (HTTP, MCP import, OpenAPI import), never
fetched at call time (server validation and agent runs), and other tenants keep answering.

Before: `{"properties": {"default": {"$ref": URL}}}` and `$dynamicRef` registered 201 and every call made the
replica GET the URL (jsonschema's own urlopen: no egress policy, no timeout); two calls against a server that
never answers hung both validation threads.
"""

from __future__ import annotations

import asyncio
import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import mcp_types as types
import pytest

from agent_core.tools import ArgumentChecker, openai_tool_schema
from foundation.errors import ValidationFailed
from foundation.schema.validation import validate_arguments
from registry import Database, KeyStore
from sandbox.config import SandboxConfig
from sandbox.fake import FakeBackend
from sandbox.manager import SandboxManager
from toolserver.config import Settings
from toolserver.http.app import build_services, create_app
from toolserver.nodes.local import LocalNodes
from toolserver.tools.mcp import McpToolRunner

QUICK_S = 10.0  # generous; a refused reference answers in milliseconds
SOURCE = "def f(a=None, default=None):\n    return a\n"


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Records every request and then holds it, as a server that never answers would."""

    seen: list[str] = []

    def do_GET(self) -> None:
        self.seen.append(self.path)
        time.sleep(3)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def trap() -> Iterator[tuple[str, list[str]]]:
    """A loopback URL and the list of requests that reached it."""
    seen: list[str] = []
    handler = type("Handler", (_Recorder,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/latest/meta-data/", seen
    server.shutdown()
    server.server_close()


def hostile_schemas(url: str) -> list[dict[str, Any]]:
    """Every form the review found, and the other positions a reference can hide in."""
    return [
        {"type": "object", "properties": {"default": {"$ref": url}}},  # a property NAMED default
        {"type": "object", "properties": {"a": {"$dynamicRef": url}}},
        {"type": "object", "properties": {"a": {"$recursiveRef": url}}},
        {"type": "object", "properties": {"enum": {"items": {"$ref": url}}}},
        {"type": "object", "properties": {"examples": {"anyOf": [{"$ref": url}]}}},
        {"type": "object", "$defs": {"const": {"$ref": url}}, "properties": {"a": {"$ref": "#/$defs/const"}}},
        {"type": "object", "properties": {"a": {"contentSchema": {"$ref": url}}}},
        {"type": "object", "properties": {"a": {"$id": url, "$ref": "#/x"}}},  # "#" against a remote base
    ]


class _FakeRemote(McpToolRunner):
    """An MCP server's tool list, without a network: what a hostile remote server would list."""

    def __init__(self) -> None:
        super().__init__()
        self.tools: list[types.Tool] = []

    async def list_tools(self, url: str, headers: Any, timeout_s: float = 30.0) -> list[types.Tool]:
        return self.tools


@pytest.fixture
async def server(tmp_path):
    settings = Settings(home=tmp_path, pool_size=0)
    db = Database(settings.database)
    manager = SandboxManager(SandboxConfig(pool_size=0, node_id="n"), backend=FakeBackend("n"))
    remote = _FakeRemote()
    services = build_services(settings, db, LocalNodes({"n": manager}), {"mcp": remote})
    _, key_a = KeyStore(db).create("team-a", "a")
    _, key_b = KeyStore(db).create("team-b", "b")
    app = create_app(services)
    if not any(getattr(r, "path", None) == "/v1/tools/import/mcp" for r in app.routes):
        from toolserver.http.routes import mcp_imports as mcp_import

        app.include_router(mcp_import.router)
    transport = httpx.ASGITransport(app=app)
    clients = {
        name: httpx.AsyncClient(
            transport=transport, base_url="http://t", headers={"Authorization": f"Bearer {key}"}, timeout=60
        )
        for name, key in (("a", key_a), ("b", key_b))
    }
    yield {**clients, "services": services, "remote": remote}
    await services.environments.shutdown()
    for client in clients.values():
        await client.aclose()
    await manager.shutdown()
    db.close()


def _assert_refused(response: httpx.Response, what: str) -> None:
    assert response.status_code == 422, (what, response.text)
    error = response.json()["error"]
    assert error["type"] == "validation_error", error
    assert error["field"].split(".")[0] in ("parameters", "url", "document"), error
    assert "$ref" in error["message"] or "$id" in error["message"], error


async def test_registration_refuses_every_remote_reference(server, trap):
    url, seen = trap
    for i, schema in enumerate(hostile_schemas(url)):
        body = {"name": f"t{i}", "kind": "python", "source": SOURCE, "parameters": schema}
        response = await server["a"].post("/v1/tools", json=body)
        _assert_refused(response, schema)
        error = response.json()["error"]
        where = f"{error['field']} {error['message']}"
        assert "parameters.properties" in where or "parameters.$defs" in where, error  # the position
    assert seen == []


async def test_mcp_import_refuses_a_remote_reference_in_a_listed_schema(server, trap):
    url, seen = trap
    for schema in hostile_schemas(url):
        server["remote"].tools = [
            types.Tool(name="ok", input_schema={"type": "object"}),
            types.Tool(name="evil", input_schema=schema),
        ]
        response = await server["a"].post("/v1/tools/import/mcp", json={"url": "http://127.0.0.1:9/mcp"})
        _assert_refused(response, schema)
        assert "evil" in response.json()["error"]["message"]
    assert (await server["a"].get("/v1/tools/ok")).status_code == 404  # all or nothing
    assert seen == []


async def test_openapi_import_refuses_a_passed_through_dynamic_ref(server, trap):
    url, seen = trap
    document = {
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1"},
        "servers": [{"url": "https://api.example.com"}],
        "paths": {
            "/x": {
                "get": {
                    "operationId": "x",
                    "parameters": [{"name": "q", "in": "query", "schema": {"$dynamicRef": url}}],
                    "responses": {"200": {"description": "ok"}},
                }
            }
        },
    }
    response = await server["a"].post("/v1/tools/import/openapi", json={"document": document})
    _assert_refused(response, document)
    assert seen == []


async def test_a_stored_remote_reference_is_never_fetched_and_others_answer(server, trap):
    # A schema stored before the check existed (or written by anything else) still fetches nothing.
    url, seen = trap
    store = server["services"].tools.tools
    for i, schema in enumerate(hostile_schemas(url)[:2]):  # $ref, $dynamicRef
        await asyncio.to_thread(
            store.register,
            "team-a",
            f"old{i}",
            kind="python",
            parameters=schema,
            config={"source": SOURCE, "function": "f", "timeout_s": 5},
        )
    started = time.monotonic()
    calls = [
        asyncio.create_task(
            server["a"].post(f"/v1/tools/old{i}/call", json={"arguments": {"default": 1, "a": 1}})
        )
        for i in range(2)
    ]
    health = await server["b"].get("/healthz")
    assert health.status_code == 200
    for call in calls:
        response = await call
        assert response.status_code == 422, response.text
        assert response.json()["error"]["field"] == "parameters"
    assert time.monotonic() - started < QUICK_S
    assert seen == []


def test_validation_and_agent_checks_never_fetch(trap):
    url, seen = trap
    for schema in hostile_schemas(url):
        try:
            validate_arguments(schema, {"default": 1, "a": 1})
        except ValidationFailed as exc:  # unresolvable: a 422, not a GET
            assert exc.field == "parameters"
        checker = ArgumentChecker([openai_tool_schema("t", "", schema)])
        assert checker.check("t", {"default": 1, "a": 1}) == {"default": 1, "a": 1}  # the server reports it
    assert seen == []
