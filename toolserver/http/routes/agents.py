"""/v1/agents, /v1/runs (with an SSE stream of steps) and /v1/human-requests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import Depends, Query, Request
from fastapi.responses import StreamingResponse

from toolserver.api import Agent, AgentList, HumanRequest, HumanRequestList, Run, RunList, RunStarted
from toolserver.api.requests import AgentCreate, HumanAnswer, RunCreate
from toolserver.http.routes.deps import caller, services
from toolserver.http.routes.router import ApiRouter, content_of
from toolserver.http.sse import sse_event, sse_response
from toolserver.http.stream_limits import StreamSlot, stream_limits, stream_slot
from toolserver.service.principal import Principal

router = ApiRouter(tags=["agents"])


@router.post("/v1/agents", status_code=201, response_model=Agent)
async def define_agent(
    body: AgentCreate, who: Principal = Depends(caller), svc: Any = Depends(services)
) -> Any:
    """Define or redefine an agent of the caller's namespace."""
    return await svc.agents.define(who, body)


@router.get("/v1/agents", response_model=AgentList)
async def list_agents(who: Principal = Depends(caller), svc: Any = Depends(services)) -> Any:
    """The caller's agents."""
    return {"agents": await svc.agents.list_agents(who)}


@router.get("/v1/agents/{name}", response_model=Agent)
async def get_agent(name: str, who: Principal = Depends(caller), svc: Any = Depends(services)) -> Any:
    """One agent; an `llm.api_key` is shown as `***`."""
    return await svc.agents.get_agent(who, name)


@router.post("/v1/runs", status_code=201, response_model=RunStarted)
async def start_run(body: RunCreate, who: Principal = Depends(caller), svc: Any = Depends(services)) -> Any:
    """Start a durable run of an agent on a task."""
    return await svc.agents.start_run(who, body)


@router.get("/v1/runs", response_model=RunList)
async def list_runs(
    status: str | None = Query(None, pattern="^(running|waiting_human|succeeded|failed)$"),
    who: Principal = Depends(caller),
    svc: Any = Depends(services),
) -> Any:
    """The caller's runs, optionally of one status."""
    return {"runs": await svc.agents.list_runs(who, status)}


@router.get("/v1/runs/{run_id}", response_model=Run)
async def get_run(run_id: str, who: Principal = Depends(caller), svc: Any = Depends(services)) -> Any:
    """A run with every step."""
    return await svc.agents.get_run(who, run_id)


@router.get(
    "/v1/runs/{run_id}/events",
    response_class=StreamingResponse,
    responses=content_of("text/event-stream", "`step` and `status` events, then `end`"),
)
async def run_events(
    run_id: str,
    after: int = -1,
    who: Principal = Depends(caller),
    svc: Any = Depends(services),
    slot: StreamSlot = Depends(stream_slot),
) -> StreamingResponse:
    """Steps as SSE; a stream ends with a `reconnect` event after TOOLSERVER_MAX_STREAM_S."""
    events = svc.agents.events(who, run_id, after)
    first = await anext(events)  # a missing or foreign run fails here, as a normal 404

    async def stream() -> AsyncIterator[bytes]:
        yield sse_event(*first)
        async for event, data in events:
            yield sse_event(event, data)

    return sse_response(slot.bounded(stream()))


@router.get("/v1/human-requests", response_model=HumanRequestList)
async def human_requests(
    status: str | None = Query(None, pattern="^(pending|answered|expired)$"),
    who: Principal = Depends(caller),
    svc: Any = Depends(services),
) -> Any:
    """Questions the caller's agents asked a human, optionally of one status."""
    return {"requests": await svc.agents.human_requests(who, status)}


@router.get("/v1/human-requests/{request_id}", response_model=HumanRequest)
async def human_request(
    request: Request,
    request_id: str,
    wait_s: float = Query(0.0, ge=0, le=300),
    who: Principal = Depends(caller),
    svc: Any = Depends(services),
) -> Any:
    """One request; with `wait_s` a long-poll, which counts as one of the namespace's open streams."""
    if wait_s <= 0:
        return await svc.agents.human_request(who, request_id, 0.0)
    limits = stream_limits(request)
    with limits.hold(who.namespace):
        return await svc.agents.human_request(who, request_id, min(wait_s, limits.max_stream_s))


@router.post("/v1/human-requests/{request_id}/answer", response_model=HumanRequest)
async def answer(
    request_id: str, body: HumanAnswer, who: Principal = Depends(caller), svc: Any = Depends(services)
) -> Any:
    """Answer a human request; the waiting run resumes."""
    return await svc.agents.answer(who, request_id, body.answer)
