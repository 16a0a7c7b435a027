"""Server-sent events: the one way routes write an event, a keep-alive and an event-stream response.

return sse_response(slot.bounded(stream()))   # each chunk of stream() made by sse_event(...)
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import StreamingResponse

__all__ = ["KEEP_ALIVE", "sse_event", "sse_response"]

KEEP_ALIVE = b": keep-alive\n\n"
"""A comment line: keeps proxies from closing an idle stream, ignored by every SSE parser."""


def sse_event(event: str, data: Any) -> bytes:
    """One event: its name and its data as one line of JSON (values JSON cannot hold are written as text)."""
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n".encode()


def sse_response(body: AsyncIterator[bytes]) -> StreamingResponse:
    """An uncached `text/event-stream` response streaming `body`."""
    return StreamingResponse(body, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
