"""/v1/environments: multi-agent environments — create, post messages, step the task center, watch."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import Depends, Query, Response
from fastapi.responses import StreamingResponse

from toolserver.api import Environment, EnvironmentList, EnvironmentSteps, HubMessage
from toolserver.api.requests import EnvironmentCreate, EnvironmentMessage, EnvironmentStep
from toolserver.http.routes.deps import caller, services
from toolserver.http.routes.router import ApiRouter, content_of
from toolserver.http.sse import KEEP_ALIVE, sse_event, sse_response
from toolserver.http.stream_limits import StreamSlot, stream_slot
from toolserver.service.principal import Principal

router = ApiRouter(prefix="/v1/environments", tags=["environments"])


@router.post("", status_code=201, response_model=Environment)
async def create(
    body: EnvironmentCreate, who: Principal = Depends(caller), svc: Any = Depends(services)
) -> Any:
    """Create a multi-agent environment of the caller's namespace."""
    return await svc.environments.create(who.namespace, body.model_dump())


@router.get("", response_model=EnvironmentList)
async def list_environments(who: Principal = Depends(caller), svc: Any = Depends(services)) -> Any:
    """The caller's environment names."""
    return {"environments": await svc.environments.names(who.namespace)}


@router.get("/{name}", response_model=Environment)
async def describe(
    name: str,
    after: int = Query(0, ge=0),
    limit: int = Query(100, ge=1, le=1000),
    who: Principal = Depends(caller),
    svc: Any = Depends(services),
) -> Any:
    """An environment's agents, task center and a page of its history."""
    return await svc.environments.describe(who.namespace, name, after, limit)


@router.post("/{name}/messages", status_code=201, response_model=HubMessage)
async def post_message(
    name: str, body: EnvironmentMessage, who: Principal = Depends(caller), svc: Any = Depends(services)
) -> Any:
    """Post a message on the environment's hub."""
    return await svc.environments.post(who.namespace, name, body.model_dump())


@router.post("/{name}/step", response_model=EnvironmentSteps)
async def step(
    name: str,
    body: EnvironmentStep | None = None,
    who: Principal = Depends(caller),
    svc: Any = Depends(services),
) -> Any:
    """Step the task center up to `steps` times."""
    return {"steps": await svc.environments.step(who.namespace, name, body.steps if body else 1)}


@router.get(
    "/{name}/events",
    response_class=StreamingResponse,
    responses=content_of("text/event-stream", "`message` events"),
)
async def events(
    name: str,
    after: int = Query(0, ge=0),
    follow: bool = Query(True, description="keep streaming new messages; false: send what exists and end"),
    who: Principal = Depends(caller),
    svc: Any = Depends(services),
    slot: StreamSlot = Depends(stream_slot),
) -> StreamingResponse:
    """Messages as SSE; a stream ends with a `reconnect` event after TOOLSERVER_MAX_STREAM_S."""
    first = await svc.environments.wait_history(who.namespace, name, after, 0.0)  # 404 before streaming

    async def stream() -> AsyncIterator[bytes]:
        position = after
        batch = first
        while True:
            for message in batch:
                position = max(position, int(message["position"]))
                yield sse_event("message", message)
            if not follow:
                return
            if not batch:
                yield KEEP_ALIVE
            batch = await svc.environments.wait_history(who.namespace, name, position, 15.0)

    return sse_response(slot.bounded(stream()))


@router.delete("/{name}", status_code=204, response_class=Response)
async def delete(name: str, who: Principal = Depends(caller), svc: Any = Depends(services)) -> Response:
    """Stop an environment; its agents and their sessions go, its history stays."""
    await svc.environments.delete(who.namespace, name)
    return Response(status_code=204)
