"""/v1/memory: scoped memories of the caller's namespace — add, search, recent, get, delete, clear."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Query, Response
from pydantic import BaseModel, ConfigDict

from toolserver.api import MemoryCleared, MemoryItem, MemoryItems
from toolserver.http.routes.deps import caller, services
from toolserver.http.routes.router import ApiRouter
from toolserver.service.principal import Principal

router = ApiRouter(prefix="/v1/memory", tags=["memory"])


class MemoryCreate(BaseModel):
    """Size and scope checks happen in the store, so they give the same errors over HTTP and in Python."""

    model_config = ConfigDict(extra="forbid")

    text: str
    metadata: dict[str, Any] | None = None


@router.post("/{scope}", status_code=201, response_model=MemoryItem)
async def add_memory(
    scope: str, body: MemoryCreate, who: Principal = Depends(caller), svc: Any = Depends(services)
) -> Any:
    """Remember a text in a scope of the caller's namespace."""
    item = await svc.memory.add(who.namespace, scope, body.text, body.metadata)
    return item.to_dict()


@router.get("/{scope}/search", response_model=MemoryItems)
async def search_memory(
    scope: str,
    q: str = Query(..., max_length=2000),
    k: int = Query(5, ge=1, le=100),
    who: Principal = Depends(caller),
    svc: Any = Depends(services),
) -> Any:
    """The `k` memories of the scope that match `q` best."""
    items = await svc.memory.search(who.namespace, scope, q, k)
    return {"items": [item.to_dict() for item in items]}


@router.get("/{scope}", response_model=MemoryItems)
async def recent_memory(
    scope: str,
    k: int = Query(20, ge=1, le=100),
    who: Principal = Depends(caller),
    svc: Any = Depends(services),
) -> Any:
    """The `k` newest memories of the scope."""
    items = await svc.memory.recent(who.namespace, scope, k)
    return {"items": [item.to_dict() for item in items]}


@router.get("/{scope}/{id}", response_model=MemoryItem)
async def get_memory(
    scope: str, id: str, who: Principal = Depends(caller), svc: Any = Depends(services)
) -> Any:
    """One memory."""
    item = await svc.memory.get(who.namespace, scope, id)
    return item.to_dict()


@router.delete("/{scope}/{id}", status_code=204, response_class=Response)
async def delete_memory(
    scope: str, id: str, who: Principal = Depends(caller), svc: Any = Depends(services)
) -> Response:
    """Forget one memory."""
    await svc.memory.delete(who.namespace, scope, id)
    return Response(status_code=204)


@router.delete("/{scope}", response_model=MemoryCleared)
async def clear_memory(scope: str, who: Principal = Depends(caller), svc: Any = Depends(services)) -> Any:
    """Forget every memory of the scope; answers how many went."""
    return {"deleted": await svc.memory.clear(who.namespace, scope)}
