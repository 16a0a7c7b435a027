"""Progress of a long shell or python tool call, for a caller that asked for it (MCP's `progressToken`).

`reporting(listener)` marks the calls made inside it; the session view that tool runners use
(`SessionSandbox`) then runs `shell` and `python` as streamed runs on the session's node, hands each piece of
output to the listener as it arrives, and answers the run's final result, the same fields as an unstreamed
call. Everything else about the call (validation, tenancy, the tool sandbox, the audit) stays as it is.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from typing import Any, ClassVar

from foundation.errors import ToolServerError
from sandbox.base import Display, PythonError, PythonResult, ShellResult
from sandbox.streams import StreamEvent, StreamKind
from toolserver.service.principal import Principal
from toolserver.service.sessions import SessionService
from toolserver.service.streams import StreamService

__all__ = [
    "Progress",
    "StreamedCallFailed",
    "current_listener",
    "python_result",
    "reporting",
    "shell_result",
    "streamed_call",
]

log = logging.getLogger(__name__)

Progress = Callable[[StreamEvent], Awaitable[None]]
"""Told each event of a streamed call's output (`stdout`, `stderr`, `display`, `truncated`), in order."""
READ_WAIT_S = 15.0
_LISTENER: ContextVar[Progress | None] = ContextVar("toolserver_call_progress", default=None)


class StreamedCallFailed(ToolServerError):
    """A streamed call's run ended with an error: it keeps that error's type, status and details."""

    type: ClassVar[str] = "streamed_call_failed"

    def __init__(self, error: dict[str, Any]) -> None:
        details = {k: v for k, v in error.items() if k not in ("type", "message", "status")}
        super().__init__(str(error.get("message", "the streamed call failed")), **details)
        self.type = str(error.get("type", StreamedCallFailed.type))  # type: ignore[misc]
        status = error.get("status")
        self.status = status if isinstance(status, int) and 400 <= status < 600 else 500  # type: ignore[misc]


@contextlib.contextmanager
def reporting(listener: Progress) -> Iterator[None]:
    """Within this block, shell and python calls of tool runners report their output to `listener`."""
    token = _LISTENER.set(listener)
    try:
        yield
    finally:
        _LISTENER.reset(token)


def current_listener() -> Progress | None:
    """The listener of the call being served, or None when nobody asked for progress."""
    return _LISTENER.get()


async def streamed_call(
    sessions: SessionService,
    principal: Principal,
    session_id: str,
    kind: StreamKind,
    source: str,
    timeout_s: float,
    listener: Progress,
) -> dict[str, Any]:
    """Run `source` as a streamed run, telling `listener` its output; the run's final result."""
    streams = StreamService(sessions)
    run_id = await streams.start(principal, session_id, kind, source, timeout_s)
    offset, telling = 0, True
    while True:
        read = await streams.read(principal, session_id, run_id, offset, READ_WAIT_S)
        for event in read.events:
            if telling:
                try:
                    await listener(event)
                except Exception as exc:  # a listener that fails stops hearing; the call goes on
                    log.debug("progress listener failed, no more progress for run %s: %r", run_id, exc)
                    telling = False
        offset = read.next_offset
        if read.done:
            if read.error is not None or read.result is None:
                raise StreamedCallFailed(read.error or {"message": "the streamed run gave no result"})
            return read.result


def shell_result(fields: dict[str, Any]) -> ShellResult:
    """A ShellResult from a streamed run's result fields."""
    return ShellResult(**fields)


def python_result(fields: dict[str, Any]) -> PythonResult:
    """A PythonResult from a streamed run's result fields (displays and the error rebuilt)."""
    error = fields.get("error")
    return PythonResult(
        **{
            **fields,
            "display": [Display(**item) for item in fields.get("display") or []],
            "error": PythonError(**error) if isinstance(error, dict) else None,
        }
    )
