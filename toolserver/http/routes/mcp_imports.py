"""`POST /v1/tools/import/mcp`: every tool of an external MCP server becomes an `mcp` tool of the caller.

The runner that proxies those tools is `toolserver.tools.mcp`; its way out is `toolserver.outbound.mcp_transport`.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends
from pydantic import BaseModel, ConfigDict, Field

from toolserver.api import ToolsImported
from toolserver.http.routes.deps import caller, services
from toolserver.http.routes.router import ApiRouter
from toolserver.service.principal import Principal

__all__ = ["McpImport", "router"]


class McpImport(BaseModel):
    """`POST /v1/tools/import/mcp`: where the MCP server is, and how to name its tools here."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(..., max_length=2048, description="the server's Streamable HTTP endpoint")
    headers: dict[str, str] | None = Field(None, description="sent with every request, e.g. Authorization")
    secret_headers: dict[str, str] | None = Field(None, description="header -> name of a secret of yours")
    prefix: str = Field("", max_length=32, description="put before each remote tool's name")
    timeout_s: float | None = Field(None, gt=0, le=600)


router = ApiRouter(prefix="/v1/tools", tags=["tools"])


@router.post("/import/mcp", status_code=201, response_model=ToolsImported)
async def import_mcp(body: McpImport, who: Principal = Depends(caller), svc: Any = Depends(services)) -> Any:
    """Every tool of an MCP server (Streamable HTTP) becomes an `mcp` tool of the caller."""
    tools = await svc.tools.import_mcp(
        who,
        body.url,
        headers=body.headers,
        secret_headers=body.secret_headers,
        prefix=body.prefix,
        timeout_s=body.timeout_s,
    )
    return {"tools": tools}
