"""Agents and runs: definitions in the registry, execution by the run scheduler, human requests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from foundation.errors import Conflict
from registry import AgentStore, HumanRequestStore, RunStore
from toolserver.api.requests import AgentCreate, RunCreate
from toolserver.runs.llm import LLMPolicy, build_llm
from toolserver.runs.scheduler import human_view, run_view
from toolserver.service.principal import Principal
from toolserver.service.sessions import SessionService

__all__ = ["AgentService"]

_TERMINAL = ("succeeded", "failed")


class AgentService:
    """The HTTP side of agents; `scheduler` is a RunScheduler, in-process or behind a Ray actor."""

    def __init__(
        self,
        agents: AgentStore,
        runs: RunStore,
        humans: HumanRequestStore,
        sessions: SessionService,
        scheduler: Any,
        llm_policy: LLMPolicy | None = None,
    ) -> None:
        self.agents = agents
        self.runs = runs
        self.humans = humans
        self.sessions = sessions
        self.scheduler = scheduler
        self.llm_policy = llm_policy or LLMPolicy()

    async def define(self, principal: Principal, body: AgentCreate) -> dict[str, Any]:
        """Create or replace an agent of the caller; a broken llm config is refused now."""
        config = body.model_dump(exclude={"name"})
        build_llm(config["llm"], self.llm_policy)  # refuse a broken llm config now, not at the first run
        try:
            record = await asyncio.to_thread(self.agents.create, principal.namespace, body.name, config)
        except Conflict:
            record = await asyncio.to_thread(self.agents.update, principal.namespace, body.name, config)
        return _agent_view(record)

    async def list_agents(self, principal: Principal) -> list[dict[str, Any]]:
        """The caller's agents (api keys masked)."""
        return [_agent_view(r) for r in await asyncio.to_thread(self.agents.list, principal.namespace)]

    async def get_agent(self, principal: Principal, name: str) -> dict[str, Any]:
        """One of the caller's agents (api key masked)."""
        return _agent_view(await asyncio.to_thread(self.agents.get, principal.namespace, name))

    async def start_run(self, principal: Principal, body: RunCreate) -> dict[str, Any]:
        """Record a run of one of the caller's agents and hand it to the scheduler."""
        await asyncio.to_thread(self.agents.get, principal.namespace, body.agent)
        if body.session_id:
            await self.sessions.get(principal, body.session_id)  # 404 unless the caller's own
        record = await asyncio.to_thread(
            self.runs.create, principal.namespace, body.agent, body.task, session_id=body.session_id
        )
        await self.scheduler.submit(principal.namespace, record.id)
        return {"id": record.id, "status": record.status}

    async def get_run(self, principal: Principal, run_id: str) -> dict[str, Any]:
        """One of the caller's runs with every step."""
        record = await asyncio.to_thread(self.runs.get, principal.namespace, run_id)
        steps = await asyncio.to_thread(self.runs.steps, principal.namespace, run_id)
        return run_view(record, steps)

    async def list_runs(self, principal: Principal, status: str | None) -> list[dict[str, Any]]:
        """The caller's runs, of one status when given."""
        records = await asyncio.to_thread(lambda: self.runs.list(principal.namespace, status=status))  # type: ignore[arg-type]
        return [run_view(r) for r in records]

    async def events(
        self, principal: Principal, run_id: str, after: int = -1
    ) -> AsyncIterator[tuple[str, Any]]:
        """(event, data) pairs: every step, status changes, and `end` when the run has finished."""
        await asyncio.to_thread(self.runs.get, principal.namespace, run_id)
        status = None
        while True:
            batch = await self.scheduler.wait_steps(principal.namespace, run_id, after, 15.0)
            for step in batch["steps"]:
                after = max(after, step["index"])
                yield "step", step
            if batch["status"] != status:
                status = batch["status"]
                yield "status", {"status": status}
            if status in _TERMINAL and not batch["steps"]:
                yield "end", {"status": status}
                return

    async def human_requests(self, principal: Principal, status: str | None) -> list[dict[str, Any]]:
        """The caller's questions to a human, of one status when given."""
        records = await asyncio.to_thread(lambda: self.humans.list(principal.namespace, status=status))  # type: ignore[arg-type]
        return [human_view(r) for r in records]

    async def human_request(self, principal: Principal, request_id: str, wait_s: float) -> dict[str, Any]:
        """One of the caller's human requests, waiting up to `wait_s` (at most 300 s) for its answer."""
        view: dict[str, Any] = await self.scheduler.wait_answer(
            principal.namespace, request_id, min(wait_s, 300.0)
        )
        return view

    async def answer(self, principal: Principal, request_id: str, answer: str) -> dict[str, Any]:
        """Answer one of the caller's human requests; the waiting run resumes."""
        view: dict[str, Any] = await self.scheduler.answer(principal.namespace, request_id, answer)
        return view

    async def ask(self, principal: Principal, question: str, context: Any) -> dict[str, Any]:
        """The ask_human tool called directly by an external agent: a request to long-poll."""
        record = await asyncio.to_thread(
            self.humans.create, principal.namespace, question, context={"context": context}
        )
        return {"status": "waiting_human", "request_id": record.id}


def _agent_view(record: Any) -> dict[str, Any]:
    config = dict(record.config)
    llm = dict(config.get("llm") or {})
    if "api_key" in llm:
        llm["api_key"] = "***"
    config["llm"] = llm
    return {"name": record.name, **config, "created_at": record.created_at, "updated_at": record.updated_at}
