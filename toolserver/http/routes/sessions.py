"""/v1/sessions: sandboxes, their shell, their kernel and their files."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from toolserver.http.models import PythonRequest, SessionCreate, ShellRequest
from toolserver.http.routes.deps import caller, services
from toolserver.service.principal import Principal

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])


@router.post("", status_code=201)
async def create_session(
    body: SessionCreate, who: Principal = Depends(caller), svc: Any = Depends(services)
) -> Any:
    return await svc.sessions.create(who, body)


@router.get("")
async def list_sessions(who: Principal = Depends(caller), svc: Any = Depends(services)) -> Any:
    return {"sessions": await svc.sessions.list(who)}


@router.get("/{session_id}")
async def get_session(session_id: str, who: Principal = Depends(caller), svc: Any = Depends(services)) -> Any:
    return await svc.sessions.get(who, session_id)


@router.delete("/{session_id}", status_code=204)
async def delete_session(
    session_id: str, who: Principal = Depends(caller), svc: Any = Depends(services)
) -> Response:
    await svc.sessions.delete(who, session_id)
    return Response(status_code=204)


@router.post("/{session_id}/shell")
async def shell(
    session_id: str, body: ShellRequest, who: Principal = Depends(caller), svc: Any = Depends(services)
) -> Any:
    result = await svc.sessions.shell(who, session_id, body.command, body.timeout_s)
    return {k: v for k, v in asdict(result).items()}


@router.post("/{session_id}/python")
async def python(
    session_id: str, body: PythonRequest, who: Principal = Depends(caller), svc: Any = Depends(services)
) -> Any:
    return asdict(await svc.sessions.python(who, session_id, body.code, body.timeout_s))


@router.post("/{session_id}/python/restart")
async def restart_python(
    session_id: str, who: Principal = Depends(caller), svc: Any = Depends(services)
) -> Any:
    await svc.sessions.restart_python(who, session_id)
    return {"restarted": True}


@router.put("/{session_id}/files/{path:path}")
async def upload(
    session_id: str,
    path: str,
    request: Request,
    who: Principal = Depends(caller),
    svc: Any = Depends(services),
) -> Any:
    data = await request.body()
    return asdict(await svc.sessions.write_file(who, session_id, path, data))


@router.get("/{session_id}/files/{path:path}")
async def download(
    session_id: str, path: str, who: Principal = Depends(caller), svc: Any = Depends(services)
) -> Response:
    data = await svc.sessions.read_file(who, session_id, path)
    return Response(content=data, media_type="application/octet-stream")


@router.get("/{session_id}/files")
async def list_files(
    session_id: str, dir: str = "", who: Principal = Depends(caller), svc: Any = Depends(services)
) -> Any:
    return {"entries": [asdict(e) for e in await svc.sessions.list_files(who, session_id, dir)]}
