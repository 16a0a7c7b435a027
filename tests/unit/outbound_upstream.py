"""A hostile upstream on 127.0.0.1 for the outbound-limit tests: endless and bomb bodies, an LLM endpoint that
answers too much, and MCP servers that fan out (the official SDK's server, its handlers misbehaving)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import mcp_types as types
import uvicorn
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

MIB = 1024 * 1024
_CHUNK = b"x" * (256 * 1024)


async def small(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def endless(request: Request) -> Response:
    """A body that never ends (and declares no length)."""

    async def chunks() -> AsyncIterator[bytes]:
        while True:
            yield _CHUNK
            await asyncio.sleep(0)

    return StreamingResponse(chunks(), media_type="application/octet-stream")


def _bomb(total: int) -> bytes:
    squeeze = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    zeros = b"\0" * MIB
    return b"".join([squeeze.compress(zeros) for _ in range(total // MIB)] + [squeeze.flush()])


BOMB = _bomb(256 * MIB)  # about 250 KB on the wire, 256 MiB once inflated


async def bomb(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(BOMB), 64 * 1024):
            yield BOMB[i : i + 64 * 1024]

    return StreamingResponse(chunks(), media_type="text/plain", headers={"content-encoding": "gzip"})


async def llm_huge(request: Request) -> Response:
    """A completion whose content is 32 MiB, sent as it is made."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "'
        for _ in range(32 * MIB // len(_CHUNK)):
            yield _CHUNK
        yield b'"}}]}'

    return StreamingResponse(chunks(), media_type="application/json")


async def llm_endless_stream(request: Request) -> Response:
    """An SSE stream whose first `data:` line never ends."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'data: {"choices": [{"index": 0, "delta": {"content": "'
        while True:
            yield _CHUNK
            await asyncio.sleep(0)

    return StreamingResponse(chunks(), media_type="text/event-stream")


LLM_KEYS_SEEN: list[str] = []
"""The Authorization header of every request to /llm-ok, in order."""


async def llm_ok(request: Request) -> Response:
    LLM_KEYS_SEEN.append(request.headers.get("authorization", ""))
    message = {"role": "assistant", "content": "fine"}
    return JSONResponse({"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})


def _mcp_server(mode: str) -> Server[Any]:
    """An MCP server whose tools/list is `mode`: "pager" (pages forever), "fanout" (100k tools in one page),
    "hugepage" (one page of 24 MiB); its tool `huge` answers 24 MiB of text."""

    async def list_tools(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        schema = {"type": "object"}
        if mode == "pager":
            page = int((params.cursor if params else None) or 0)
            tool = types.Tool(name=f"t{page}", input_schema=schema)
            return types.ListToolsResult(tools=[tool], next_cursor=str(page + 1))
        if mode == "fanout":
            return types.ListToolsResult(
                tools=[types.Tool(name=f"t{i}", input_schema=schema) for i in range(100_000)]
            )
        return types.ListToolsResult(
            tools=[types.Tool(name="big", description="d" * (24 * MIB), input_schema=schema)]
        )

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        if params.name == "huge":
            return types.CallToolResult(content=[types.TextContent(type="text", text="z" * (24 * MIB))])
        return types.CallToolResult(content=[types.TextContent(type="text", text="fine")])

    return Server(f"hostile-{mode}", on_list_tools=list_tools, on_call_tool=call_tool)


class _ManagerApp:
    def __init__(self, manager: StreamableHTTPSessionManager) -> None:
        self.manager = manager

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.manager.handle_request(scope, receive, send)


@dataclass
class Upstream:
    url: str
    port: int


@contextlib.contextmanager
def serve_upstream() -> Iterator[Upstream]:
    """Serve everything above on a free loopback port, in a thread, for the duration of the block."""
    managers = {
        f"{mode}-{wire}": StreamableHTTPSessionManager(
            app=_mcp_server(mode), stateless=True, json_response=(wire == "json")
        )
        for mode in ("pager", "fanout", "hugepage")
        for wire in ("json", "sse")
    }

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for manager in managers.values():
                await stack.enter_async_context(manager.run())
            yield

    routes: list[Any] = [
        Route("/small", small),
        Route("/endless", endless),
        Route("/bomb", bomb),
        Route("/llm-huge/v1/chat/completions", llm_huge, methods=["POST"]),
        Route("/llm-stream/v1/chat/completions", llm_endless_stream, methods=["POST"]),
        Route("/llm-ok/v1/chat/completions", llm_ok, methods=["POST"]),
        *(Mount(f"/{name}/mcp", app=_ManagerApp(manager)) for name, manager in managers.items()),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="error", lifespan="on", access_log=False, timeout_graceful_shutdown=1)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "the upstream did not start"
        time.sleep(0.01)
    try:
        yield Upstream(f"http://127.0.0.1:{port}", port)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
