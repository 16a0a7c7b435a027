"""`/openapi.json` describes responses: every route's success body has a schema, and errors have ours."""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute

from registry import Database
from sandbox.config import SandboxConfig
from sandbox.fake import FakeBackend
from sandbox.manager import SandboxManager
from toolserver.config import Settings
from toolserver.http.app import build_services, create_app
from toolserver.nodes.local import LocalNodes

NOT_JSON = {"text/event-stream", "application/octet-stream", "text/plain"}


def _app(tmp_path):
    settings = Settings(home=tmp_path, pool_size=0)
    manager = SandboxManager(SandboxConfig(pool_size=0, node_id="n"), backend=FakeBackend("n"))
    return create_app(build_services(settings, Database(settings.database), LocalNodes({"n": manager})))


def _api_routes(routes: list[Any]) -> list[APIRoute]:
    """The app's routes, also those of included routers (FastAPI nests them)."""
    found: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        elif hasattr(route, "original_router"):
            found += _api_routes(route.original_router.routes)
    return found


def test_every_route_declares_what_it_answers(tmp_path):
    routes = _api_routes(_app(tmp_path).routes)
    assert len(routes) > 40
    undeclared = [
        f"{sorted(route.methods)} {route.path}"
        for route in routes
        if route.include_in_schema
        and route.response_model is None
        and route.status_code != 204
        and not NOT_JSON & set(route.responses.get(200, {}).get("content", {}))
    ]
    assert undeclared == []


def test_the_document_gives_each_success_a_schema_and_each_error_the_error_body(tmp_path):
    document = _app(tmp_path).openapi()
    schemas = document["components"]["schemas"]
    assert {"Session", "ShellResult", "PythonResult", "ToolCallResult", "Run", "ErrorReply"} <= set(schemas)
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            ok = [code for code in responses if code.startswith("2")]
            assert ok, (method, path)
            for code in ok:
                if code == "204":
                    assert "content" not in responses[code], (method, path)
                    continue
                content = responses[code]["content"]
                media, body = next(iter(content.items()))
                assert body.get("schema"), (method, path, code)
                if media == "application/json":
                    assert body["schema"] != {}, (method, path, code)
            for code in ("404", "422"):
                error = responses[code]["content"]["application/json"]["schema"]
                assert error == {"$ref": "#/components/schemas/ErrorReply"}, (method, path, code)


def test_an_answer_keeps_the_keys_its_handler_set_and_no_others(tmp_path):
    """Response models type the answer; they neither drop an undeclared key nor add unset ones."""
    from toolserver.api import Run

    routes = [r for r in _api_routes(_app(tmp_path).routes) if r.path == "/v1/runs"]
    assert routes and all(r.response_model_exclude_unset for r in routes)
    listed = Run.model_validate(
        {"id": "r", "agent": "a", "task": "t", "status": "running", "created_at": 1.0, "new_field": 7}
    )
    assert listed.model_dump(exclude_unset=True) == {
        "id": "r",
        "agent": "a",
        "task": "t",
        "status": "running",
        "created_at": 1.0,
        "new_field": 7,
    }
