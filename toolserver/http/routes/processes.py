"""/v1/sessions/{id}/processes: background processes, their output (JSON or followed as SSE), stdin, signals."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

from fastapi import Depends, Path, Query, Request

from foundation.errors import ToolServerError
from toolserver.api.processes import (
    ProcessInfo,
    ProcessList,
    ProcessOutput,
    ProcessSignal,
    ProcessStart,
    ProcessStdin,
    StdinWritten,
)
from toolserver.http.routes.deps import caller, services
from toolserver.http.routes.router import ApiRouter
from toolserver.http.sse import KEEP_ALIVE, sse_event, sse_response
from toolserver.http.stream_limits import StreamSlot, stream_limits, stream_slot
from toolserver.service.principal import Principal
from toolserver.service.processes import ProcessService

router = ApiRouter(prefix="/v1/sessions/{session_id}/processes", tags=["processes"])

FOLLOW_WAIT_S = 15.0  # one long read of a follower; a keep-alive goes out between two quiet ones
Pid = Path(ge=1, le=1 << 22, description="the process id inside the sandbox")


async def processes(svc: Any = Depends(services)) -> ProcessService:
    """The process service over the app's sessions."""
    return ProcessService(svc.sessions)


async def _follow_slot(
    request: Request,
    follow: bool = Query(False, description="stream (SSE) until the process ends"),
    who: Principal = Depends(caller),
) -> AsyncIterator[StreamSlot | None]:
    """A stream slot when the caller follows (429 over the namespace's cap), else None."""
    if not follow:
        yield None
        return
    async for slot in stream_slot(request, who):
        yield slot


@router.post("", status_code=201, response_model=ProcessInfo)
async def start_process(
    session_id: str,
    body: ProcessStart,
    who: Principal = Depends(caller),
    procs: ProcessService = Depends(processes),
) -> Any:
    """Start a command in the background (201); 429 when the session runs as many as it may."""
    return asdict(await procs.start(who, session_id, body.command, body.cwd, body.env, body.stdin))


@router.get("", response_model=ProcessList)
async def list_processes(
    session_id: str, who: Principal = Depends(caller), procs: ProcessService = Depends(processes)
) -> Any:
    """The session's background processes, running and recently finished, oldest first."""
    return {"processes": [asdict(p) for p in await procs.list(who, session_id)]}


@router.get("/{pid}", response_model=ProcessInfo)
async def get_process(
    session_id: str,
    pid: int = Pid,
    who: Principal = Depends(caller),
    procs: ProcessService = Depends(processes),
) -> Any:
    """One background process: status, exit code, the offsets of its kept output."""
    return asdict(await procs.get(who, session_id, pid))


@router.get(
    "/{pid}/output",
    response_model=ProcessOutput,
    responses={
        200: {
            "description": "the output from `offset` (JSON); with `follow=true` an event stream of `stdout` and"
            " `stderr` chunks, then `exit` with the process",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    },
)
async def process_output(
    request: Request,
    session_id: str,
    pid: int = Pid,
    offset: int = Query(0, ge=0, le=1 << 62, description="byte offset to read from"),
    wait_s: float = Query(0.0, ge=0, le=30, description="without follow: wait this long for new output"),
    who: Principal = Depends(caller),
    procs: ProcessService = Depends(processes),
    slot: StreamSlot | None = Depends(_follow_slot),
) -> Any:
    """Output kept in the process's ring buffer, from `offset`; `follow=true` streams it as it comes."""
    if slot is None:
        if wait_s <= 0:
            return asdict(await procs.output(who, session_id, pid, offset, 0.0))
        with stream_limits(request).hold(who.namespace):
            return asdict(await procs.output(who, session_id, pid, offset, wait_s))
    first = await procs.output(who, session_id, pid, offset, 0.0)  # a foreign session is a plain 404 here
    return sse_response(slot.bounded(_follow(procs, who, session_id, pid, first)))


async def _follow(
    procs: ProcessService, who: Principal, session_id: str, pid: int, out: Any
) -> AsyncIterator[bytes]:
    while True:
        for chunk in out.chunks:
            yield sse_event(chunk.stream, {"offset": chunk.offset, "data": chunk.data})
        if out.done:
            yield sse_event("exit", asdict(out.process) | {"next_offset": out.next_offset})
            return
        if not out.chunks:
            yield KEEP_ALIVE
        asked = time.monotonic()
        try:
            out = await procs.output(who, session_id, pid, out.next_offset, FOLLOW_WAIT_S)
        except ToolServerError as exc:
            yield sse_event("error", exc.to_dict())
            return
        if not out.chunks and not out.done and time.monotonic() - asked < 0.05:
            await asyncio.sleep(
                0.2
            )  # an answer that did not wait (the daemon is the sandbox's): pace the loop


@router.post("/{pid}/stdin", response_model=StdinWritten)
async def write_stdin(
    session_id: str,
    body: ProcessStdin,
    pid: int = Pid,
    who: Principal = Depends(caller),
    procs: ProcessService = Depends(processes),
) -> Any:
    """Write to a process started with `stdin: true`; 413 past 1 MiB."""
    written = await procs.write_stdin(who, session_id, pid, body.data.encode("utf-8"), body.eof)
    return {"written": written}


@router.post("/{pid}/signal", response_model=ProcessInfo)
async def signal_process(
    session_id: str,
    body: ProcessSignal,
    pid: int = Pid,
    who: Principal = Depends(caller),
    procs: ProcessService = Depends(processes),
) -> Any:
    """Send a signal to the process's group (TERM by default)."""
    return asdict(await procs.signal(who, session_id, pid, body.signal))
