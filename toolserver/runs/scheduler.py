"""Runs agent loops as asyncio tasks and resumes them from stored checkpoints.

A run that waits for a human has no task at all: its state is in the database, and the answer (or the
human timeout) starts a new task that resumes it — on whichever process hosts the scheduler then.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select

from agent_core import LoopSettings, RunState, build_strategy
from agent_core.llm import LLMClient
from agent_core.state import Step
from foundation.errors import NotFound, ToolServerError
from foundation.wakeups import Wakeups
from registry import AgentStore, Database, HumanRequestStore, RunStore
from registry.models import HumanRequest, RunRecord
from toolserver.runs.executor import ServerToolExecutor
from toolserver.runs.llm import LLMPolicy, build_llm
from toolserver.service.principal import Principal
from toolserver.service.tools import ToolService
from toolserver.tools.base import MissingSecret

__all__ = ["RunScheduler", "human_view", "run_view"]

log = logging.getLogger(__name__)

NO_ANSWER = "(Nobody answered within {timeout:g} s. Continue without a human answer.)"


def run_view(record: RunRecord, steps: list[Any] | None = None) -> dict[str, Any]:
    """A run as the API shows it (with its steps when given)."""
    view = {
        "id": record.id,
        "agent": record.agent,
        "task": record.task,
        "session_id": record.session_id,
        "status": record.status,
        "result": record.result,
        "error": record.error,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }
    if steps is not None:
        view["steps"] = [step_view(s) for s in steps]
    return view


def step_view(step: Any) -> dict[str, Any]:
    """A step as the API shows it."""
    return {"index": step.index, "kind": step.kind, "content": step.content, "usage": step.usage}


def human_view(record: HumanRequest) -> dict[str, Any]:
    """A human request as the API shows it."""
    return {
        "id": record.id,
        "run_id": record.run_id,
        "question": record.question,
        "context": record.context,
        "status": record.status,
        "answer": record.answer,
        "created_at": record.created_at,
        "answered_at": record.answered_at,
        "deadline": getattr(record, "deadline", None),
    }


class RunScheduler:
    """Starts, resumes and watches runs; one per server (a named Ray actor, or in-process in tests)."""

    def __init__(
        self, db: Database, tools: ToolService, memory: Any | None = None, llm_policy: LLMPolicy | None = None
    ) -> None:
        self.db = db
        self.llm_policy = llm_policy or LLMPolicy()
        self.agents = AgentStore(db)
        self.runs = RunStore(db)
        self.humans = HumanRequestStore(db)
        self.tools = tools
        self.memory = memory
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # Held only while someone long-polls: a run or request nobody waits on costs nothing here.
        self._changed = Wakeups()
        self._answered = Wakeups()
        self._timers: dict[str, asyncio.Task[None]] = {}

    # -- entry points --------------------------------------------------------------------------------

    async def submit(self, namespace: str, run_id: str) -> None:
        """Start a new run in the background."""
        self._spawn(namespace, run_id, None, None)

    async def answer(self, namespace: str, request_id: str, answer: str) -> dict[str, Any]:
        """Store a human's answer (once) and resume the run that asked."""
        record = await asyncio.to_thread(self.humans.answer, namespace, request_id, answer)
        self._cancel_timer(request_id)
        self._answered.notify(request_id)
        if record.run_id:
            self._spawn(namespace, record.run_id, answer, request_id)
        return human_view(record)

    async def wait_answer(self, namespace: str, request_id: str, wait_s: float) -> dict[str, Any]:
        """A human request, after waiting up to `wait_s` for its answer (an event, not a polling loop)."""
        with self._answered.watch(request_id) as answered:  # before the read: an answer in between counts
            record = await asyncio.to_thread(self.humans.get, namespace, request_id)
            if record.status == "pending" and wait_s > 0:
                await self._answered.wait(answered, wait_s)
                record = await asyncio.to_thread(self.humans.get, namespace, request_id)
        return human_view(record)

    async def wait_steps(self, namespace: str, run_id: str, after: int, wait_s: float) -> dict[str, Any]:
        """Steps after index `after`; waits up to `wait_s` for new ones while the run is running."""
        with self._changed.watch(run_id) as changed:  # before the reads: a step in between wakes us
            record = await asyncio.to_thread(self.runs.get, namespace, run_id)
            steps = await asyncio.to_thread(self.runs.steps, namespace, run_id, after=after)
            if not steps and record.status == "running" and wait_s > 0:
                await self._changed.wait(changed, wait_s)
                record = await asyncio.to_thread(self.runs.get, namespace, run_id)
                steps = await asyncio.to_thread(self.runs.steps, namespace, run_id, after=after)
        return {"status": record.status, "steps": [step_view(s) for s in steps]}

    async def recover(self) -> dict[str, int]:
        """After a restart: resume interrupted runs, re-arm human timeouts of waiting ones."""
        running, waiting = await asyncio.to_thread(self._unfinished)
        running = [r for r in running if r.id not in self._tasks]  # a live scheduler drives those already
        for record in running:
            self._spawn(record.namespace, record.id, None, None)
        armed = resumed = 0
        for record in waiting:
            # An answer that arrived just before a crash was stored but not yet acted on.
            for request in await asyncio.to_thread(self._asked_by, record):
                if request.status == "answered":
                    self._spawn(record.namespace, record.id, request.answer, request.id)
                    resumed += 1
                elif request.status == "expired":
                    self._spawn_timeout(record.namespace, record.id, request.id)
                    resumed += 1
            armed += await self._arm_timeouts(record.namespace, record.id)
        return {"resumed": len(running) + resumed, "waiting": len(waiting) - resumed, "timers": armed}

    async def idle(self) -> None:
        """Wait until no run is being driven (tests and shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    # -- driving -------------------------------------------------------------------------------------

    def _spawn(self, namespace: str, run_id: str, answer: str | None, request_id: str | None) -> None:
        previous = self._tasks.get(run_id)

        async def drive() -> None:
            if previous is not None:  # one resume at a time per run, in order
                await asyncio.gather(previous, return_exceptions=True)
            try:
                await self._drive(namespace, run_id, answer, request_id)
            finally:
                if self._tasks.get(run_id) is task:
                    del self._tasks[run_id]
                self._changed.notify(run_id)

        task = asyncio.get_running_loop().create_task(drive(), name=f"run-{run_id}")
        self._tasks[run_id] = task

    async def _drive(self, namespace: str, run_id: str, answer: str | None, request_id: str | None) -> None:
        run = await asyncio.to_thread(self.runs.get, namespace, run_id)
        if run.status in ("succeeded", "failed"):
            return
        if answer is None and (run.state or {}).get("status") == "waiting_human":
            return  # a duplicate resume queued behind the drive that paused it: nothing to do until an answer
        try:
            state = await self._advance(namespace, run, answer, request_id)
        except ToolServerError as exc:
            await asyncio.to_thread(self.runs.update, namespace, run_id, status="failed", error=exc.message)
            await self._step(namespace, run_id, Step(-1, "error", exc.to_dict()))
            return
        except Exception as exc:  # a bug must fail the run, not the scheduler
            log.exception("run %s crashed", run_id)
            await asyncio.to_thread(
                self.runs.update,
                namespace,
                run_id,
                status="failed",
                error=f"internal error: {type(exc).__name__}",
            )
            return
        error = state.error.get("message") if state.error else None
        await asyncio.to_thread(
            self.runs.update,
            namespace,
            run_id,
            status=state.status,
            state=state.to_dict(),
            result=state.answer,
            error=error,
        )
        if state.status == "waiting_human":
            await self._arm_timeouts(namespace, run_id)

    async def _advance(
        self, namespace: str, run: RunRecord, answer: str | None, request_id: str | None
    ) -> RunState:
        agent = await asyncio.to_thread(self.agents.get, namespace, run.agent)
        config = agent.config
        principal = Principal(namespace=namespace, key_id=f"run:{run.id}")
        memory_scope = config.get("memory_scope")
        executor = ServerToolExecutor(
            self.tools,
            self.humans,
            principal,
            run_id=run.id,
            session_id=run.session_id,
            tool_names=list(config.get("tools", [])),
            memory=self.memory,
            memory_scope=memory_scope,
            human_timeout_s=config.get("human_timeout_s"),
        )
        await executor.prepare()
        system_prompt = str(config.get("system_prompt", "You are a helpful agent."))
        if run.state is None and self.memory is not None and memory_scope:
            system_prompt += await self._memories_for(namespace, memory_scope, run.task)

        async def on_step(step: Step) -> None:
            await self._step(namespace, run.id, step)

        async def on_checkpoint(state: RunState) -> None:
            # A run interrupted after this (a crash, a lost node) resumes here instead of from its start.
            snapshot = state.to_dict()
            await asyncio.to_thread(self.runs.update, namespace, run.id, status="running", state=snapshot)

        name = config.get("strategy", "function_calling")
        options: dict[str, Any] = {}
        if name == "reflection" and self.memory is not None and memory_scope:
            options["memory"] = _Critiques(self.memory, namespace, memory_scope)
        strategy = build_strategy(
            name,
            await self._llm(namespace, config.get("llm", {})),
            executor,
            LoopSettings(
                system_prompt=system_prompt,
                max_steps=int(config.get("max_steps", 20)),
                on_step=on_step,
                on_checkpoint=on_checkpoint,
            ),
            **options,
        )
        if run.state is None:
            return await strategy.start(run.task)
        return await strategy.resume(RunState.from_dict(run.state), answer, request_id=request_id)

    async def _llm(self, namespace: str, config: dict[str, Any]) -> LLMClient:
        """The run's LLM client; a key named by `api_key_secret` comes from the namespace's secrets."""
        secret = None
        name = config.get("api_key_secret")
        if name:
            try:
                secret = await asyncio.to_thread(self.tools.secrets.get, namespace, str(name))
            except NotFound:
                raise MissingSecret(
                    f"the agent's llm.api_key_secret names {name!r}, which is not set for this namespace",
                    secret=str(name),
                ) from None
        return build_llm(config, self.llm_policy, secret=secret)

    async def _memories_for(self, namespace: str, scope: str, task: str) -> str:
        try:
            items = await self.memory.search(namespace, scope, task, 5)  # type: ignore[union-attr]
        except ToolServerError:
            return ""
        if not items:
            return ""
        lines = "\n".join(f"- {item.text}" for item in items)
        return f"\n\nRelevant memories from earlier runs:\n{lines}"

    async def _step(self, namespace: str, run_id: str, step: Step) -> None:
        usage = step.usage.to_dict() if step.usage else None
        await asyncio.to_thread(self.runs.add_step, namespace, run_id, step.kind, step.content, usage=usage)
        self._changed.notify(run_id)

    # -- human timeouts ------------------------------------------------------------------------------

    async def _arm_timeouts(self, namespace: str, run_id: str) -> int:
        pending = await asyncio.to_thread(self._pending_requests, namespace, run_id)
        armed = 0
        for request in pending:
            deadline = getattr(request, "deadline", None)
            if deadline is None or request.id in self._timers:
                continue
            delay = max(0.0, deadline - time.time())
            self._timers[request.id] = asyncio.get_running_loop().create_task(
                self._expire_later(namespace, request.id, delay)
            )
            armed += 1
        return armed

    async def _expire_later(self, namespace: str, request_id: str, delay: float) -> None:
        await asyncio.sleep(delay)
        self._timers.pop(request_id, None)
        if not await asyncio.to_thread(self._expire_one, namespace, request_id):
            return  # answered in the meantime
        request = await asyncio.to_thread(self.humans.get, namespace, request_id)
        self._answered.notify(request_id)
        if request.run_id:
            self._spawn_timeout(namespace, request.run_id, request_id)

    def _spawn_timeout(self, namespace: str, run_id: str, request_id: str) -> None:
        """Continue (or fail) a run whose question expired, as its agent's `on_human_timeout` says."""
        asyncio.get_running_loop().create_task(self._after_timeout(namespace, run_id, request_id))

    async def _after_timeout(self, namespace: str, run_id: str, request_id: str) -> None:
        run = await asyncio.to_thread(self.runs.get, namespace, run_id)
        agent = await asyncio.to_thread(self.agents.get, namespace, run.agent)
        timeout = float(agent.config.get("human_timeout_s") or 0)
        if agent.config.get("on_human_timeout", "continue") == "fail":
            message = f"nobody answered the question within {timeout:g} s"
            await asyncio.to_thread(self.runs.update, namespace, run.id, status="failed", error=message)
            await self._step(
                namespace, run.id, Step(-1, "error", {"type": "human_timeout", "message": message})
            )
            self._changed.notify(run.id)
            return
        self._spawn(namespace, run.id, NO_ANSWER.format(timeout=timeout), request_id)

    def _cancel_timer(self, request_id: str) -> None:
        timer = self._timers.pop(request_id, None)
        if timer is not None:
            timer.cancel()

    # -- queries across namespaces (the scheduler serves all of them) ---------------------------------

    def _unfinished(self) -> tuple[list[RunRecord], list[RunRecord]]:
        with self.db.session(write=False) as session:
            rows = list(
                session.exec(select(RunRecord).where(col(RunRecord.status).in_(["running", "waiting_human"])))
            )
            for row in rows:
                session.expunge(row)
        return [r for r in rows if r.status == "running"], [r for r in rows if r.status == "waiting_human"]

    def _expire_one(self, namespace: str, request_id: str) -> bool:
        """Expire this one request if it is still pending (a timer must never expire its neighbours)."""
        with self.db.session() as session:
            done = session.exec(  # type: ignore[call-overload]
                update(HumanRequest)
                .where(
                    col(HumanRequest.id) == request_id,
                    col(HumanRequest.namespace) == namespace,
                    col(HumanRequest.status) == "pending",
                )
                .values(status="expired")
            )
            return bool(done.rowcount == 1)

    def _asked_by(self, run: RunRecord) -> list[HumanRequest]:
        """The requests a waiting run's checkpoint waits for, in their current state."""
        try:
            waiting_for = RunState.from_dict(run.state or {}).waiting_for
        except ToolServerError:
            return []
        found = []
        for call in waiting_for:
            try:
                found.append(self.humans.get(run.namespace, str(call.request_id)))
            except NotFound:
                continue
        return found

    def _pending_requests(self, namespace: str, run_id: str) -> list[HumanRequest]:
        try:
            return [r for r in self.humans.pending(namespace) if r.run_id == run_id]
        except NotFound:
            return []


class _Critiques:
    """Reflection's critiques kept in the agent's memory scope, so later runs learn from them too."""

    def __init__(self, memory: Any, namespace: str, scope: str) -> None:
        self.memory = memory
        self.namespace = namespace
        self.scope = scope

    async def add(self, text: str) -> None:
        await self.memory.add(self.namespace, self.scope, text, {"kind": "critique"})

    async def recent(self, k: int) -> list[str]:
        items = await self.memory.recent(self.namespace, self.scope, max(k * 4, k))
        critiques = [i.text for i in items if i.metadata.get("kind") == "critique"][:k]
        return list(reversed(critiques))  # oldest first
