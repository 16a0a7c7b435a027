"""/v1/sessions/{id}/ports/{port}/...: a sandbox's port over HTTP and WebSocket; shares; /p/{token}/ previews.

A share's URL works without the API key until it expires or is revoked (TOOLSERVER_PORT_SHARING=false turns
sharing off); anything wrong with a token answers 404, as for a share that never existed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from typing import Any

from fastapi import Depends, Path, Request, WebSocket
from fastapi.responses import Response

from foundation.errors import Forbidden, NotFound, ToolServerError, Unauthorized
from toolserver.api import ErrorReply
from toolserver.api.ports import PortShare, PortShareCreate
from toolserver.http.port_proxy import PortConnector, port_limits, proxy_http, proxy_websocket, reach
from toolserver.http.routes.deps import caller, services
from toolserver.http.routes.router import ApiRouter
from toolserver.service.principal import Principal

router = ApiRouter(tags=["ports"])

Port = Path(ge=1, le=65535, description="the port inside the sandbox (on its own 127.0.0.1)")
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
PROXIED: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "whatever the server in the sandbox answers (any status, any type)",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    },
    502: {"model": ErrorReply, "description": "nothing listens on the port inside the sandbox"},
}
_BASE = "/v1/sessions/{session_id}/ports/{port}"


async def _reach(svc: Any, who: Principal, session_id: str) -> PortConnector:
    connector: PortConnector = await svc.sessions._on_node(
        who, session_id, lambda node: reach(node, session_id)
    )
    return connector


@router.post(_BASE + "/share", status_code=201, response_model=PortShare)
async def share_port(
    request: Request,
    session_id: str,
    body: PortShareCreate,
    port: int = Port,
    who: Principal = Depends(caller),
    svc: Any = Depends(services),
) -> Any:
    """A preview URL for the port that works without the API key until `ttl_s` is over or it is revoked."""
    if not svc.settings.port_sharing:
        raise Forbidden(
            "this server does not share ports (TOOLSERVER_PORT_SHARING)", setting="TOOLSERVER_PORT_SHARING"
        )
    share = await svc.sessions._on_node(
        who, session_id, lambda node: node.port_share(session_id, port, body.ttl_s)
    )
    token = _token(who.namespace, session_id, port, share.id, share.secret)
    url = str(request.base_url).rstrip("/") + f"/p/{token}/"
    return {"id": share.id, "port": port, "url": url, "token": token, "expires_at": share.expires_at}


@router.delete(_BASE + "/share/{share_id}", status_code=204, response_class=Response)
async def revoke_share(
    session_id: str,
    share_id: str = Path(pattern="^[0-9a-f]{16}$"),
    port: int = Port,
    who: Principal = Depends(caller),
    svc: Any = Depends(services),
) -> Response:
    """End a share: its URL answers 404 from now on."""
    await svc.sessions._on_node(who, session_id, lambda node: node.port_share_revoke(session_id, share_id))
    return Response(status_code=204)


async def proxy(
    request: Request,
    session_id: str,
    path: str,
    port: int = Port,
    who: Principal = Depends(caller),
    svc: Any = Depends(services),
) -> Response:
    """HTTP to 127.0.0.1:port inside the sandbox (the API key is not passed on); 502 when nothing listens."""
    guest = await _reach(svc, who, session_id)
    prefix = f"/v1/sessions/{session_id}/ports/{port}"
    return await proxy_http(request, guest, port, path, port_limits(request.app.state), session_id, prefix)


async def preview(request: Request, token: str, path: str, svc: Any = Depends(services)) -> Response:
    """A shared port, without the API key: 404 once the share expired or was revoked."""
    who, session_id, port = await _opened(svc, token)
    guest = await _reach(svc, who, session_id)
    return await proxy_http(
        request, guest, port, path, port_limits(request.app.state), session_id, f"/p/{token}"
    )


for _method in METHODS:  # one route per method, each with its own operation id
    router.add_api_route(
        _BASE + "/{path:path}",
        proxy,
        methods=[_method],
        response_class=Response,
        responses=PROXIED,
        operation_id=f"proxy_port_{_method.lower()}",
    )
    router.add_api_route(
        "/p/{token}/{path:path}",
        preview,
        methods=[_method],
        response_class=Response,
        responses=PROXIED,
        operation_id=f"preview_port_{_method.lower()}",
    )


@router.websocket(_BASE + "/{path:path}")
async def proxy_ws(ws: WebSocket, session_id: str, port: int, path: str) -> None:
    """WebSocket to 127.0.0.1:port inside the sandbox; the handshake needs the API key (Authorization)."""
    svc = ws.app.state.services
    try:
        if not 1 <= port <= 65535:
            raise NotFound("no such port")
        who = await asyncio.to_thread(svc.auth.principal, ws.headers.get("authorization"))
        guest = await _reach(svc, who, session_id)
    except (ToolServerError, Unauthorized):
        await ws.close(code=1008)
        return
    await _relay_or_close(ws, guest, port, path, svc, session_id)


@router.websocket("/p/{token}/{path:path}")
async def preview_ws(ws: WebSocket, token: str, path: str) -> None:
    """WebSocket to a shared port, without the API key."""
    svc = ws.app.state.services
    try:
        who, session_id, port = await _opened(svc, token)
        guest = await _reach(svc, who, session_id)
    except ToolServerError:
        await ws.close(code=1008)
        return
    await _relay_or_close(ws, guest, port, path, svc, session_id)


async def _relay_or_close(ws: WebSocket, guest: Any, port: int, path: str, svc: Any, session_id: str) -> None:
    try:
        await proxy_websocket(ws, guest, port, path, port_limits(ws.app.state), session_id)
    except (ToolServerError, OSError, Exception):
        try:
            await ws.close(code=1011)
        except RuntimeError:
            pass


def _token(namespace: str, session_id: str, port: int, share_id: str, secret: str) -> str:
    where = json.dumps([namespace, session_id, port, share_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(where).decode().rstrip("=") + "." + secret


async def _opened(svc: Any, token: str) -> tuple[Principal, str, int]:
    """Who, which session and which port a token opens; NotFound for any token that opens nothing."""
    gone = NotFound("no such preview (it may have expired or been revoked)")
    if not svc.settings.port_sharing or len(token) > 1024 or "." not in token:
        raise gone
    where, secret = token.rsplit(".", 1)
    try:
        namespace, session_id, port, share_id = json.loads(
            base64.urlsafe_b64decode(where + "=" * (-len(where) % 4))
        )
        if not all(isinstance(v, str) for v in (namespace, session_id, share_id)) or not isinstance(
            port, int
        ):
            raise ValueError
    except (ValueError, TypeError, binascii.Error):
        raise gone from None
    who = Principal(namespace=namespace, key_id="share:" + share_id)
    try:  # share-first: checked without the auto-resume (and use) of `_on_node`; `_reach` resumes a good one
        record = await svc.sessions._verified_record(who, session_id)
        node = await svc.sessions.nodes.node(record.node_id)
        ok = await node.port_share_check(session_id, port, share_id, secret)
    except ToolServerError:
        raise gone from None
    if not ok:
        raise gone
    return who, session_id, port
