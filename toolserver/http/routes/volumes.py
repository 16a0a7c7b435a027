"""/v1/volumes: a namespace's size-capped filesystems that outlive sessions."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Response

from toolserver.api import Volume, VolumeList
from toolserver.api.requests import VolumeCreate
from toolserver.http.routes.deps import caller, services
from toolserver.http.routes.router import ApiRouter
from toolserver.service.principal import Principal

router = ApiRouter(prefix="/v1/volumes", tags=["volumes"])


@router.post("", status_code=201, response_model=Volume)
async def create_volume(
    body: VolumeCreate, who: Principal = Depends(caller), svc: Any = Depends(services)
) -> Any:
    """Make an empty volume (201); sessions mount it with `volumes: [{"name", "path"}]`."""
    return await svc.volumes.create(who, body)


@router.get("", response_model=VolumeList)
async def list_volumes(who: Principal = Depends(caller), svc: Any = Depends(services)) -> Any:
    """The caller's volumes."""
    return {"volumes": await svc.volumes.list(who)}


@router.get("/{name}", response_model=Volume)
async def get_volume(name: str, who: Principal = Depends(caller), svc: Any = Depends(services)) -> Any:
    """One volume, with its use."""
    return await svc.volumes.get(who, name)


@router.delete("/{name}", status_code=204, response_class=Response)
async def delete_volume(
    name: str, who: Principal = Depends(caller), svc: Any = Depends(services)
) -> Response:
    """Delete a volume and its data (409 while a session mounts it)."""
    await svc.volumes.delete(who, name)
    return Response(status_code=204)
