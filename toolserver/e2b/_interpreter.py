"""The code interpreter's API (`e2b-code-interpreter`, port 49999): `/execute` as JSON lines, `/contexts`.

Code runs in the session's one kernel, streamed: stdout and stderr lines as they come, a `result` per display
item (matplotlib figures as `png`) and for the cell's value, an `error` for an exception. Every context is
that one kernel: `/contexts` answers it, restarting a context restarts the kernel.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from foundation.errors import ToolServerError, UserError
from toolserver.e2b._auth import KeyCheck, sandbox_caller, sandbox_secret
from toolserver.e2b._control import _Body, _parse
from toolserver.e2b._limits import stream_limits_of
from toolserver.service.streams import StreamService

__all__ = ["Interpreter", "interpreter_routes"]

EXECUTE_TIMEOUT_S = 3600.0  # the SDK's timeout is the client's; the server's bound is the kernel's cap
READ_WAIT_S = 5.0
KEEPALIVE = b'{"type": "keepalive"}\n'  # the SDK skips types it does not know
CONTEXT_ID = "default"
_MIMES = {
    "text/plain": "text",
    "text/html": "html",
    "text/markdown": "markdown",
    "image/svg+xml": "svg",
    "image/png": "png",
    "image/jpeg": "jpeg",
    "application/pdf": "pdf",
    "text/latex": "latex",
    "application/json": "json",
    "application/javascript": "javascript",
}


class Execute(_Body):
    code: str = Field(max_length=1 << 20)
    context_id: str | None = None
    language: str | None = None
    env_vars: dict[str, str] | None = Field(None, max_length=256)


class NewContext(_Body):
    language: str | None = None
    cwd: str | None = None


def _line(kind: str, **fields: Any) -> bytes:
    return (json.dumps({"type": kind, **fields}) + "\n").encode()


def _stopped(why: str) -> bytes:
    return _line("error", name="StreamEnded", value=f"execution stopped: {why}", traceback="")


def _result(mime: str, data: Any, main: bool = False) -> bytes:
    key = _MIMES.get(mime)
    if key == "json" and isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            pass
    if key is None:
        return _line("result", extra={mime: data}, is_main_result=main)
    return _line("result", **{key: data}, is_main_result=main)


def _python_only(language: str | None) -> None:
    if language not in (None, "", "python"):
        raise UserError(f"language {language!r} is not supported here: sandboxes run a Python kernel")


def _context() -> dict[str, str]:
    return {"id": CONTEXT_ID, "language": "python", "cwd": "/workspace"}


class Interpreter:
    """The handlers; `svc` is the server's Services, `state` the main app's state (stream caps)."""

    def __init__(self, svc: Any, state: Any, records: Any) -> None:
        self.svc, self.state, self.records = svc, state, records

    async def execute(self, request: Request) -> Response:
        who, sandbox_id = await sandbox_caller(self.svc.auth, request.headers)
        body = _parse(Execute, await request.body())
        _python_only(body.language)
        envs = {**(await self.records.get(who, sandbox_id)).envs, **(body.env_vars or {})}
        if envs:
            setup = f"import os as _e2b_os\n_e2b_os.environ.update({json.dumps(envs)})\ndel _e2b_os"
            await self.svc.sessions.python(who, sandbox_id, setup, 30.0)
        limits = stream_limits_of(self.state)
        with limits.hold(who.namespace):  # 429 over the namespace's open streams, before the cell starts
            pass
        streams = StreamService(self.svc.sessions)
        run_id = await streams.start(who, sandbox_id, "python", body.code, EXECUTE_TIMEOUT_S)
        key = KeyCheck(self.svc.auth, sandbox_secret(request.headers))

        async def lines() -> AsyncIterator[bytes]:
            # Held while the body is sent: a body that never starts holds nothing.
            offset, done = 0, False
            deadline = time.monotonic() + limits.max_stream_s
            try:
                with limits.hold(who.namespace):
                    while True:
                        if time.monotonic() > deadline:
                            yield _stopped("it ran past TOOLSERVER_MAX_STREAM_S")
                            return
                        if not await key.valid():
                            yield _stopped("the stream's API key was revoked")
                            return
                        read = await streams.read(who, sandbox_id, run_id, offset, READ_WAIT_S)
                        for event in read.events:
                            for line in _event_lines(event.event, event.data):
                                yield line
                        offset = read.next_offset
                        if not read.events and not read.done:
                            yield KEEPALIVE  # a client that went away is noticed only when a write fails
                        if read.done:
                            done = True
                            for line in _end_lines(read.result, read.error):
                                yield line
                            return
            except ToolServerError as exc:
                yield _line("error", name=type(exc).__name__, value=exc.message, traceback="")
            finally:
                if not done:  # the client went away, or the stream ended early: the cell is interrupted
                    with contextlib.suppress(ToolServerError):
                        await asyncio.shield(streams.cancel(who, sandbox_id, run_id))

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    async def create_context(self, request: Request) -> Response:
        who, sandbox_id = await sandbox_caller(self.svc.auth, request.headers)
        body = _parse(NewContext, await request.body())
        _python_only(body.language)
        await self.svc.sessions.get(who, sandbox_id)
        return JSONResponse(_context())

    async def list_contexts(self, request: Request) -> Response:
        who, sandbox_id = await sandbox_caller(self.svc.auth, request.headers)
        await self.svc.sessions.get(who, sandbox_id)
        return JSONResponse([_context()])

    async def restart_context(self, request: Request) -> Response:
        who, sandbox_id = await sandbox_caller(self.svc.auth, request.headers)
        await self.svc.sessions.restart_python(who, sandbox_id)
        return Response(status_code=204)

    async def remove_context(self, request: Request) -> Response:
        who, sandbox_id = await sandbox_caller(self.svc.auth, request.headers)
        await self.svc.sessions.get(who, sandbox_id)
        return Response(status_code=204)


def _event_lines(event: str, data: Any) -> list[bytes]:
    now = time.time_ns()
    if event in ("stdout", "stderr"):
        return [_line(event, text=str(data), timestamp=now)]
    if event == "display" and isinstance(data, dict):
        return [_result(str(data.get("mime", "")), data.get("data"))]
    if event == "truncated":
        return [_line("stderr", text="[output truncated: over the server's output cap]\n", timestamp=now)]
    return []


def _end_lines(result: dict[str, Any] | None, error: dict[str, Any] | None) -> list[bytes]:
    if error is not None:
        return [
            _line(
                "error",
                name=str(error.get("type", "Error")),
                value=str(error.get("message", "")),
                traceback="",
            )
        ]
    result = result or {}
    out: list[bytes] = []
    if result.get("result") is not None:
        out.append(_result("text/plain", result["result"], main=True))
    if result.get("status") == "error" and result.get("error"):
        err = result["error"]
        tb = err.get("traceback") or []
        out.append(
            _line("error", name=err.get("ename", ""), value=err.get("evalue", ""), traceback="\n".join(tb))
        )
    elif result.get("status") == "timeout":
        out.append(
            _line(
                "error", name="TimeoutError", value="the cell ran past the server's time limit", traceback=""
            )
        )
    out.append(_line("end_of_execution"))
    return out


def interpreter_routes(api: Interpreter) -> list[Route]:
    return [
        Route("/execute", api.execute, methods=["POST"]),
        Route("/contexts", api.create_context, methods=["POST"]),
        Route("/contexts", api.list_contexts, methods=["GET"]),
        Route("/contexts/{context_id}/restart", api.restart_context, methods=["POST"]),
        Route("/contexts/{context_id}", api.remove_context, methods=["DELETE"]),
    ]
