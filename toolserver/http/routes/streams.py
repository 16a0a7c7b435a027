"""Streamed answers of `POST /v1/sessions/{id}/shell` and `/python` (`"stream": true`): server-sent events.

Events: `stdout` and `stderr` `{"data": text}`, `display` `{"mime", "data"}` (cells), `truncated` once the
output cap is reached, then `result` with the fields of the non-streamed answer (or `error`). A client that goes
away leaves the command running, unless it asked for `cancel_on_disconnect`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from foundation.errors import QuotaExceeded, ToolServerError, Unauthorized
from sandbox.streams import StreamKind
from toolserver.http.sse import KEEP_ALIVE, sse_event, sse_response
from toolserver.http.stream_limits import StreamSlot, stream_limits
from toolserver.service.principal import Principal
from toolserver.service.streams import StreamService

__all__ = ["STREAM_RESPONSES", "streamed"]

READ_WAIT_S = 15.0
STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the answer (JSON); with `stream: true` server-sent events: `stdout`, `stderr`,"
        " `display`, `truncated`, then `result` (the answer's fields) or `error`",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}


async def streamed(
    request: Request,
    who: Principal,
    svc: Any,
    session_id: str,
    kind: StreamKind,
    source: str,
    timeout_s: float,
    cancel_on_disconnect: bool,
) -> StreamingResponse:
    """Start the run (errors answer as usual, before any event), then stream it within a stream slot.

    The slot is held while the body is sent, so a body that never starts holds none.
    """
    streams = StreamService(svc.sessions)
    limits = stream_limits(request)
    with limits.hold(who.namespace):  # 429 over the namespace's open streams, before anything starts
        pass
    run_id = await streams.start(who, session_id, kind, source, timeout_s)
    slot = StreamSlot(time.monotonic() + limits.max_stream_s, limits.max_stream_s, _key_check(request))

    async def held() -> AsyncIterator[bytes]:
        try:
            with limits.hold(who.namespace):
                async for chunk in slot.bounded(body()):
                    yield chunk
        except QuotaExceeded as exc:  # others took the last slot in between
            if cancel_on_disconnect:
                await asyncio.shield(_cancel(streams, who, session_id, run_id))
            yield sse_event("error", {**exc.to_dict(), "status": exc.status})

    async def body() -> AsyncIterator[bytes]:
        done = False
        offset = 0
        try:
            while True:
                try:
                    read = await streams.read(who, session_id, run_id, offset, READ_WAIT_S)
                except ToolServerError as exc:
                    yield sse_event("error", {**exc.to_dict(), "status": exc.status})
                    done = True
                    return
                for event in read.events:
                    data = event.data if isinstance(event.data, dict) else {"data": event.data}
                    yield sse_event(event.event, data)
                offset = read.next_offset
                if read.done:
                    done = True
                    if read.error is not None:
                        yield sse_event("error", read.error)
                    else:
                        yield sse_event("result", read.result)
                    return
                if not read.events:
                    yield KEEP_ALIVE
        finally:
            if not done and cancel_on_disconnect:
                await asyncio.shield(_cancel(streams, who, session_id, run_id))

    return sse_response(held())


def _key_check(request: Request) -> Callable[[], Awaitable[bool]]:
    """Whether the request's key is still valid (an open stream ends soon after its key is revoked)."""
    auth, header = request.app.state.services.auth, request.headers.get("authorization")

    async def valid() -> bool:
        if auth.cached(header) is not None:
            return True
        try:
            await asyncio.to_thread(auth.principal, header)
        except Unauthorized:
            return False
        return True

    return valid


async def _cancel(streams: StreamService, who: Principal, session_id: str, run_id: str) -> None:
    try:
        await streams.cancel(who, session_id, run_id)
    except ToolServerError:
        pass
