"""/v1/tools: registration, listing in three formats, search, and calls."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import Depends, Query, Response
from fastapi.responses import JSONResponse

from toolserver.api import Tool, ToolCallResult, ToolList, ToolSearch, ToolsImported, WaitingHuman
from toolserver.api.requests import OpenAPIImport, ToolCall, ToolCreate
from toolserver.http.routes.deps import caller, services
from toolserver.http.routes.router import ApiRouter
from toolserver.service.principal import Principal
from toolserver.tools.formats import render

router = ApiRouter(prefix="/v1/tools", tags=["tools"])


@router.get("", response_model=ToolList)
async def list_tools(
    format: str = Query("native", pattern="^(native|openai|mcp)$"),
    who: Principal = Depends(caller),
    svc: Any = Depends(services),
) -> Any:
    """The tools the caller sees, as native, OpenAI or MCP entries."""
    return {"tools": await svc.tools.list(who, format)}


@router.get("/search", response_model=ToolSearch)
async def search_tools(
    q: str = Query(..., min_length=1, max_length=1000),
    k: int = Query(10, ge=1, le=100),
    who: Principal = Depends(caller),
    svc: Any = Depends(services),
) -> Any:
    """Ranked search over tool names and descriptions."""
    return {"results": await svc.tools.search(who, q, k)}


@router.post("", status_code=201, response_model=Tool)
async def register_tool(
    body: ToolCreate, who: Principal = Depends(caller), svc: Any = Depends(services)
) -> Any:
    """Register a python, http or deployment tool (201)."""
    return await svc.tools.register(who, body)


@router.post("/import/openapi", status_code=201, response_model=ToolsImported)
async def import_openapi(
    body: OpenAPIImport, who: Principal = Depends(caller), svc: Any = Depends(services)
) -> Any:
    """Every operation of an OpenAPI document becomes an `http` tool."""
    return {"tools": await svc.tools.import_openapi(who, body.document, body.base_url, body.prefix)}


@router.get("/{name}", response_model=Tool)
async def get_tool(name: str, who: Principal = Depends(caller), svc: Any = Depends(services)) -> Any:
    """One tool, with its settings but never secret values."""
    spec = await svc.tools.get(who, name)
    return {**render([spec], "native")[0], "config": _public_config(asdict(spec)["config"])}


@router.delete("/{name}", status_code=204, response_class=Response)
async def delete_tool(name: str, who: Principal = Depends(caller), svc: Any = Depends(services)) -> Response:
    """Remove one of the caller's tools."""
    await svc.tools.delete(who, name)
    return Response(status_code=204)


@router.post(
    "/{name}/call",
    response_model=ToolCallResult,
    responses={202: {"model": WaitingHuman, "description": "the tool asked a human; answer the request"}},
)
async def call_tool(
    name: str, body: ToolCall, who: Principal = Depends(caller), svc: Any = Depends(services)
) -> Any:
    """Call a tool; a tool that asks a human answers 202 with the request's id."""
    result = await svc.tools.call(who, name, body.arguments, body.session_id)
    if result.get("status") == "waiting_human":
        return JSONResponse(result, status_code=202)
    return result


def _public_config(config: dict[str, Any]) -> dict[str, Any]:
    """A tool's config as shown to its owner: never secret values, only their names."""
    return {k: v for k, v in config.items() if k not in ("secrets",)}
