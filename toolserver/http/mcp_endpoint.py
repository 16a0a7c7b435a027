"""`/mcp`: the caller's tools over MCP Streamable HTTP, built on the official SDK's low-level server.

`tools/list` gives the tools `GET /v1/tools?format=mcp` gives; `tools/call` runs `ToolService.call`, so a call
over MCP is validated, sandboxed, tenant-scoped and audited exactly like `POST /v1/tools/{name}/call`. Sandboxed
tools run in the namespace's tool sandbox, or in the session an `X-Toolserver-Session` header names.

The session manager runs stateless with JSON responses: no MCP session outlives its HTTP request, so any
replica can answer any request and there is nothing to lose when one restarts. A `tools/call` whose
`_meta.progressToken` is set (by a client that takes event streams) goes to a second, SSE-answering manager
instead, and a shell or python call then sends `notifications/progress` with each piece of output as it comes
(`toolserver.service.call_progress`), before its result on the same response. Only POST is served: a GET
(the SDK's standalone event stream) or DELETE (session end) answers 405, so `/mcp` never holds a stream. The SDK's manager needs its
`run()` context entered before it can serve. Starlette never forwards lifespan events to a mounted or routed
sub-app, httpx's ASGITransport sends none at all, and Ray Serve (2.60) runs only the outer app's lifespan; so
`McpEndpoint` enters `run()` itself, in a background task on the first request of each event loop.

Authentication happens before the SDK sees a request: the same `Authorization: Bearer <key>` as the rest of the
API, a 401/403 JSON error body otherwise. The principal travels in the ASGI scope, which the SDK hands to the
handlers as `ctx.request` in both protocol eras (the 2025 handshake and the 2026-07-28 per-request envelope).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError
from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

from foundation.errors import ToolServerError
from sandbox.streams import StreamEvent
from toolserver import __version__
from toolserver.http.errors import error_response
from toolserver.service.call_progress import reporting
from toolserver.service.principal import Principal
from toolserver.tools.mcp import HOPS_HEADER, current_hops, serving_hops

if TYPE_CHECKING:
    from fastapi import FastAPI

    from toolserver.http.app import Services
    from toolserver.service.tools import ToolService

__all__ = [
    "HOPS_HEADER",
    "MAX_HOPS",
    "MCP_PATH",
    "SESSION_HEADER",
    "McpEndpoint",
    "build_mcp_server",
    "current_hops",
    "mount_mcp",
]

log = logging.getLogger(__name__)

MCP_PATH = "/mcp"
SESSION_HEADER = "x-toolserver-session"
# Imported tools forward the hops a call has passed (HOPS_HEADER) + 1, so a chain of imports that leads back
# to itself ends with an error instead of tying up every replica.
MAX_HOPS = 8
_CALLER = "toolserver.caller"  # ASGI scope key: what the endpoint's authenticate() returned

Authenticate = Callable[[str | None], Awaitable[Any]]


class McpEndpoint:
    """An ASGI app: check the caller, then serve the request with a lazily started SDK session manager."""

    def __init__(self, server: Server[Any], authenticate: Authenticate, *, max_body_bytes: int) -> None:
        self.server = server
        self._authenticate = authenticate
        self._max_body_bytes = max_body_bytes
        self._loop: asyncio.AbstractEventLoop | None = None
        self._manager: StreamableHTTPSessionManager | None = None
        self._started: asyncio.Future[None] | None = None
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._streaming: McpEndpoint | None = None  # the SSE-answering twin, for calls that want progress
        self._json_response = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one POST for an authenticated caller; other methods answer 405, bad keys 401/403."""
        if scope.get("method") != "POST":
            # Stateless: every exchange is one POST. The SDK would serve a GET as a standalone SSE stream
            # that holds a replica slot for as long as the client likes, outside every stream cap.
            refused = error_response(
                405, "method_not_allowed", "/mcp takes POST only: this server keeps no MCP sessions"
            )
            refused.headers["Allow"] = "POST"
            await refused(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        authorization = headers.get(b"authorization")
        try:
            caller = await self._authenticate(authorization.decode("latin-1") if authorization else None)
        except ToolServerError as exc:
            response = error_response(exc.status, exc.type, exc.message)
            response.headers["WWW-Authenticate"] = 'Bearer realm="toolserver"'
            await response(scope, receive, send)
            return
        body, receive = await _buffered(receive, self._max_body_bytes)
        target = self._stream_twin() if _wants_progress(headers, body) else self
        manager = await target._running_manager()
        await manager.handle_request({**scope, _CALLER: caller}, receive, send)

    def _stream_twin(self) -> McpEndpoint:
        if self._streaming is None:
            twin = McpEndpoint(self.server, self._authenticate, max_body_bytes=self._max_body_bytes)
            twin._json_response = False
            self._streaming = twin
        return self._streaming

    async def aclose(self) -> None:
        """Stop the session manager (call on the loop that served; a later request starts a new one)."""
        task, stop = self._task, self._stop
        self._loop = self._manager = self._started = self._stop = self._task = None
        if task is not None and stop is not None and not task.done():
            stop.set()
            await task
        if self._streaming is not None:
            await self._streaming.aclose()

    async def _running_manager(self) -> StreamableHTTPSessionManager:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._task is None or self._task.done():
            # No await between the check and these assignments: concurrent first requests share one manager.
            self._loop = loop
            self._manager = StreamableHTTPSessionManager(
                app=self.server,
                stateless=True,
                json_response=self._json_response,
                max_request_body_size=self._max_body_bytes,
            )
            self._started, self._stop = loop.create_future(), asyncio.Event()
            # A fresh context: the long-lived task must not inherit the first request's context variables.
            self._task = contextvars.Context().run(
                loop.create_task, _run_manager(self._manager, self._started, self._stop)
            )
        assert self._manager is not None and self._started is not None
        manager = self._manager
        await asyncio.shield(self._started)
        return manager


async def _run_manager(
    manager: StreamableHTTPSessionManager, started: asyncio.Future[None], stop: asyncio.Event
) -> None:
    try:
        async with manager.run():
            started.set_result(None)
            await stop.wait()
    except BaseException as exc:
        if not started.done():
            started.set_exception(exc)
        raise


async def _buffered(receive: Receive, limit: int) -> tuple[bytes, Receive]:
    """The request body (up to `limit` + 1 bytes of it), and a receive that replays it first."""
    chunks: list[bytes] = []
    pending: list[Any] = []
    size, more = 0, True
    while more and size <= limit:
        message = await receive()
        if message["type"] != "http.request":
            pending.append(message)  # a disconnect: passed on after what came before it
            break
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        more = bool(message.get("more_body"))
    body = b"".join(chunks)
    replay: list[Any] = [{"type": "http.request", "body": body, "more_body": more}, *pending]

    async def replayed() -> Any:
        return replay.pop(0) if replay else await receive()

    return body, replayed


def _wants_progress(headers: dict[bytes, bytes], body: bytes) -> bool:
    """A `tools/call` with a progress token, from a client that takes an event stream."""
    if b"progressToken" not in body or b"text/event-stream" not in headers.get(b"accept", b""):
        return False
    try:
        message = json.loads(body)
    except ValueError:
        return False
    if not isinstance(message, dict) or message.get("method") != "tools/call":
        return False
    params = message.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    token = meta.get("progressToken") if isinstance(meta, dict) else None
    return isinstance(token, (str, int)) and not isinstance(token, bool)


def _progress_token(ctx: Any) -> str | int | None:
    params = getattr(ctx, "params", None) or {}
    meta = params.get("_meta") if isinstance(params, dict) else None
    token = meta.get("progressToken") if isinstance(meta, dict) else None
    return token if isinstance(token, (str, int)) and not isinstance(token, bool) else None


def _reporter(ctx: Any) -> Any:
    """Sends each streamed event of the call as `notifications/progress` (a count, and the text as message)."""
    told = 0

    async def tell(event: StreamEvent) -> None:
        nonlocal told
        told += 1
        if event.event in ("stdout", "stderr"):
            message = str(event.data) if event.event == "stdout" else f"[stderr] {event.data}"
        elif event.event == "display":
            mime = event.data.get("mime", "") if isinstance(event.data, dict) else ""
            message = f"[display {mime}]"
        else:
            message = f"[{event.event}]"
        await ctx.session.report_progress(float(told), None, message)

    return tell


def _caller_of(ctx: Any) -> Any:
    """What the endpoint's authenticate() returned for the request a handler is serving."""
    request = getattr(ctx, "request", None)
    scope = getattr(request, "scope", None) or {}
    if _CALLER not in scope:
        raise MCPError(types.INTERNAL_ERROR, "this MCP server is only served through McpEndpoint")
    return scope[_CALLER]


def build_mcp_server(tools: ToolService) -> Server[Any]:
    """The low-level MCP server whose handlers list and call the authenticated caller's tools."""

    async def list_tools(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        principal: Principal = _caller_of(ctx)
        try:
            entries = await tools.list(principal, "mcp")
        except ToolServerError as exc:
            raise MCPError(types.INVALID_REQUEST, exc.message) from None
        except Exception as exc:
            log.exception("MCP tools/list failed")
            raise MCPError(types.INTERNAL_ERROR, f"internal error ({type(exc).__name__})") from None
        return types.ListToolsResult(tools=[types.Tool.model_validate(entry) for entry in entries])

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        principal: Principal = _caller_of(ctx)
        session_id = ctx.request.headers.get(SESSION_HEADER) or None
        hops = _hops_of(ctx.request.headers.get(HOPS_HEADER))
        if hops >= MAX_HOPS:
            message = f"the call passed {hops} MCP proxies; an imported tool probably leads back to itself"
            return _error_result({"type": "loop_detected", "message": message})
        try:
            with contextlib.ExitStack() as scope:
                scope.enter_context(serving_hops(hops))
                if _progress_token(ctx) is not None:
                    scope.enter_context(reporting(_reporter(ctx)))
                response = await tools.call(principal, params.name, dict(params.arguments or {}), session_id)
        except ToolServerError as exc:
            return _error_result(exc.to_dict())
        except Exception as exc:
            log.exception("MCP tools/call of %s failed", params.name)
            return _error_result(
                {"type": "internal_error", "message": f"internal error ({type(exc).__name__})"}
            )
        if not response.get("ok"):
            return _error_result(response.get("error") or {"type": "tool_call_failed", "message": "failed"})
        if response.get("status") == "waiting_human":
            return _json_result({"status": "waiting_human", "request_id": response["request_id"]})
        return _json_result(response.get("result"))

    return Server(
        "toolserver",
        version=__version__,
        instructions="Tools of your toolserver namespace; sandboxed tools run in your namespace's sandbox, "
        f"or in the session named by an {SESSION_HEADER!r} request header.",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        # Arguments are schema-checked by ToolService.call; skip the SDK's per-call tools/list for Mcp-Param-*.
        get_tool_input_schema=lambda name: None,
    )


def _hops_of(header: str | None) -> int:
    return int(header) if header and header.isdigit() and len(header) < 6 else 0


def _json_result(value: Any) -> types.CallToolResult:
    """The result as JSON text, and as structured content too when it is a JSON object."""
    text = json.dumps(value, default=str, ensure_ascii=False)
    structured = json.loads(text) if isinstance(value, dict) else None
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)], structured_content=structured
    )


def _error_result(error: dict[str, Any]) -> types.CallToolResult:
    """`isError: true` with the error object of the HTTP API as JSON text; never a stack trace."""
    text = json.dumps({"error": error}, default=str, ensure_ascii=False)
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


class _McpRoute(Route):
    """A route to a raw ASGI app that still names itself in `scope["route"]`, as the metrics label."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """Starlette's match, with this route named in the child scope."""
        match, child = super().matches(scope)
        if match is not Match.NONE:
            child["route"] = self
        return match, child


def _principal_of(services: Services) -> Authenticate:
    auth = services.auth

    async def authenticate(authorization: str | None) -> Principal:
        hit = auth.cached(authorization)
        if hit is not None:
            return hit
        return await asyncio.to_thread(auth.principal, authorization)

    return authenticate


def mount_mcp(app: FastAPI, services: Services) -> McpEndpoint:
    """Serve `/mcp` from `app` (every method, no trailing-slash redirect); the endpoint is `app.state.mcp`."""
    endpoint = McpEndpoint(
        build_mcp_server(services.tools),
        _principal_of(services),
        max_body_bytes=services.settings.max_body_mb * 1024 * 1024,
    )
    app.router.routes.append(_McpRoute(MCP_PATH, endpoint, name="mcp", include_in_schema=False))
    app.state.mcp = endpoint
    return endpoint
