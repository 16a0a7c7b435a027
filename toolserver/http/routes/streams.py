"""Streamed answers of `POST /v1/sessions/{id}/shell` and `/python` (`"stream": true`): server-sent events.

Events: `stdout` and `stderr` `{"data": text}`, `display` `{"mime", "data"}` (cells), `truncated` once the
output cap is reached, then `result` with the fields of the non-streamed answer (or `error`). A client that goes
away leaves the command running, unless it asked for `cancel_on_disconnect`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, cast

from fastapi import Request
from fastapi.responses import StreamingResponse

from foundation.errors import ToolServerError
from sandbox.streams import StreamKind
from toolserver.http.sse import KEEP_ALIVE, sse_event, sse_response
from toolserver.http.stream_limits import StreamSlot, stream_slot
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
    """Start the run (errors answer as usual, before any event), then stream it within a stream slot."""
    streams = StreamService(svc.sessions)
    slots = cast(AsyncGenerator[StreamSlot, None], stream_slot(request, who))
    slot = await anext(slots)  # 429 over the namespace's open streams, before anything starts
    try:
        run_id = await streams.start(who, session_id, kind, source, timeout_s)
    except BaseException:
        await slots.aclose()
        raise

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
            await slots.aclose()

    return sse_response(slot.bounded(body()))


async def _cancel(streams: StreamService, who: Principal, session_id: str, run_id: str) -> None:
    try:
        await streams.cancel(who, session_id, run_id)
    except ToolServerError:
        pass
