"""Snapshots: `POST /v1/sessions/{id}/snapshots`, `GET /v1/snapshots`, `DELETE /v1/snapshots/{id}`.

Forks are `POST /v1/sessions {"from_snapshot": id, "count": n}` (routes/sessions.py).
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Path, Response

from toolserver.api.snapshots import Snapshot, SnapshotList
from toolserver.http.routes.deps import caller, services
from toolserver.http.routes.router import ApiRouter
from toolserver.service.principal import Principal

router = ApiRouter(tags=["snapshots"])

SnapshotId = Path(pattern=r"^snap_[0-9a-f]{1,32}$", max_length=37)


@router.post("/v1/sessions/{session_id}/snapshots", status_code=201, response_model=Snapshot)
async def create_snapshot(
    session_id: str, who: Principal = Depends(caller), svc: Any = Depends(services)
) -> Any:
    """Keep the session's /workspace and /tmp as a snapshot (201); the session runs on."""
    return await svc.sessions.snapshot(who, session_id)


@router.get("/v1/snapshots", response_model=SnapshotList)
async def list_snapshots(who: Principal = Depends(caller), svc: Any = Depends(services)) -> Any:
    """The caller's snapshots, oldest first."""
    return {"snapshots": await svc.sessions.list_snapshots(who)}


@router.delete("/v1/snapshots/{snapshot_id}", status_code=204, response_class=Response)
async def delete_snapshot(
    snapshot_id: str = SnapshotId, who: Principal = Depends(caller), svc: Any = Depends(services)
) -> Response:
    """Delete a snapshot and its files."""
    await svc.sessions.delete_snapshot(who, snapshot_id)
    return Response(status_code=204)
