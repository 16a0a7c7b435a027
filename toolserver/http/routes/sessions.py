"""/v1/sessions: sandboxes, their shell, their kernel and their files."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import Depends, Request, Response

from toolserver.api import (
    EgressReport,
    FileEntry,
    FileList,
    PythonRestarted,
    PythonResult,
    Session,
    SessionList,
    ShellResult,
)
from toolserver.api.requests import PythonRequest, SessionCreate, ShellRequest
from toolserver.http.routes.deps import caller, services
from toolserver.http.routes.router import ApiRouter, content_of
from toolserver.http.routes.streams import STREAM_RESPONSES, streamed
from toolserver.service.principal import Principal

router = ApiRouter(prefix="/v1/sessions", tags=["sessions"])


@router.post("", status_code=201, response_model=Session)
async def create_session(
    body: SessionCreate, who: Principal = Depends(caller), svc: Any = Depends(services)
) -> Any:
    """Create a sandbox session (201); its limits are capped by the server's maximums."""
    return await svc.sessions.create(who, body)


@router.get("", response_model=SessionList)
async def list_sessions(who: Principal = Depends(caller), svc: Any = Depends(services)) -> Any:
    """The caller's live sessions."""
    return {"sessions": await svc.sessions.list(who)}


@router.get("/{session_id}", response_model=Session)
async def get_session(session_id: str, who: Principal = Depends(caller), svc: Any = Depends(services)) -> Any:
    """One session."""
    return await svc.sessions.get(who, session_id)


@router.delete("/{session_id}", status_code=204, response_class=Response)
async def delete_session(
    session_id: str, who: Principal = Depends(caller), svc: Any = Depends(services)
) -> Response:
    """Destroy a session and its container."""
    await svc.sessions.delete(who, session_id)
    return Response(status_code=204)


@router.post("/{session_id}/shell", response_model=ShellResult, responses=STREAM_RESPONSES)
async def shell(
    request: Request,
    session_id: str,
    body: ShellRequest,
    who: Principal = Depends(caller),
    svc: Any = Depends(services),
) -> Any:
    """Run a command in the session's persistent bash; a timeout kills the command, not the session."""
    if body.stream:
        return await streamed(
            request, who, svc, session_id, "shell", body.command, body.timeout_s, body.cancel_on_disconnect
        )
    result = await svc.sessions.shell(who, session_id, body.command, body.timeout_s)
    return {k: v for k, v in asdict(result).items()}


@router.post("/{session_id}/python", response_model=PythonResult, responses=STREAM_RESPONSES)
async def python(
    request: Request,
    session_id: str,
    body: PythonRequest,
    who: Principal = Depends(caller),
    svc: Any = Depends(services),
) -> Any:
    """Run a cell in the session's persistent kernel; a timeout interrupts it and the state stays."""
    if body.stream:
        return await streamed(
            request, who, svc, session_id, "python", body.code, body.timeout_s, body.cancel_on_disconnect
        )
    return asdict(await svc.sessions.python(who, session_id, body.code, body.timeout_s))


@router.post("/{session_id}/python/restart", response_model=PythonRestarted)
async def restart_python(
    session_id: str, who: Principal = Depends(caller), svc: Any = Depends(services)
) -> Any:
    """Start a fresh kernel in the session."""
    await svc.sessions.restart_python(who, session_id)
    return {"restarted": True}


@router.put("/{session_id}/files/{path:path}", response_model=FileEntry)
async def upload(
    session_id: str,
    path: str,
    request: Request,
    who: Principal = Depends(caller),
    svc: Any = Depends(services),
) -> Any:
    """Write the request body to a workspace file, creating parent directories."""
    data = await request.body()
    return asdict(await svc.sessions.write_file(who, session_id, path, data))


@router.get(
    "/{session_id}/files/{path:path}",
    response_class=Response,
    responses=content_of("application/octet-stream", "the file's bytes"),
)
async def download(
    session_id: str, path: str, who: Principal = Depends(caller), svc: Any = Depends(services)
) -> Response:
    """The bytes of a workspace file."""
    data = await svc.sessions.read_file(who, session_id, path)
    return Response(content=data, media_type="application/octet-stream")


@router.get("/{session_id}/files", response_model=FileList)
async def list_files(
    session_id: str, dir: str = "", who: Principal = Depends(caller), svc: Any = Depends(services)
) -> Any:
    """The entries of a workspace directory."""
    return {"entries": [asdict(e) for e in await svc.sessions.list_files(who, session_id, dir)]}


@router.get("/{session_id}/egress", response_model=EgressReport)
async def egress(session_id: str, who: Principal = Depends(caller), svc: Any = Depends(services)) -> Any:
    """The session's egress allow-list and its proxy's recent connections (allowed and denied), oldest first."""
    return await svc.sessions.egress(who, session_id)


# pause: pause and resume
@router.post("/{session_id}/pause", response_model=Session)
async def pause_session(
    session_id: str, who: Principal = Depends(caller), svc: Any = Depends(services)
) -> Any:
    """Stop the session's container, keeping its files (and, under runsc, its memory); any call resumes it."""
    return await svc.sessions.pause(who, session_id)


@router.post("/{session_id}/resume", response_model=Session)
async def resume_session(
    session_id: str, who: Principal = Depends(caller), svc: Any = Depends(services)
) -> Any:
    """Bring a paused session back; `resumed.kernel` says whether the kernel is fresh or restored."""
    return await svc.sessions.resume(who, session_id)
