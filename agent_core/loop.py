"""The function-calling loop: model turn, tool calls (parallel ones concurrently), repeat.

A call that waits for a human does not block: the loop finishes the other calls of that turn,
checkpoints the run as `waiting_human` and returns. `resume()` continues from the checkpoint.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from agent_core.errors import (
    LLMError,
    MalformedCall,
    MaxStepsExceeded,
    RepairBudgetExceeded,
    RunNotResumable,
)
from agent_core.llm.base import AssistantTurn, LLMClient, Message, ToolCall, Usage
from agent_core.state import CheckpointHandler, PendingCall, RunState, StepHandler, StepKind
from agent_core.tools import ArgumentChecker, ToolExecutor, ToolOutcome
from foundation.errors import ToolServerError

__all__ = ["AgentLoop", "LoopSettings"]


@dataclass(frozen=True)
class LoopSettings:
    """How a run is driven, by the loop and by every strategy: its prompt, its budgets, where steps go.

    `max_steps` bounds model turns; `max_repairs` bounds consecutive turns with malformed calls (bad JSON,
    unknown tool, schema violation), which otherwise go back to the model to fix. `on_step` gets every step;
    `on_checkpoint` gets the state after each model turn and after each batch of tool results.
    """

    system_prompt: str
    max_steps: int = 20
    max_repairs: int = 3
    on_step: StepHandler | None = None
    on_checkpoint: CheckpointHandler | None = None

    def run_config(self, strategy: str, tools: ToolExecutor) -> dict[str, Any]:
        """The part of an agent's configuration recorded in its runs."""
        return {
            "strategy": strategy,
            "system_prompt": self.system_prompt,
            "max_steps": self.max_steps,
            "max_repairs": self.max_repairs,
            "tools": ArgumentChecker(tools.tool_schemas()).names,
        }

    async def emit(
        self, state: RunState, kind: StepKind, content: dict[str, Any], usage: Usage | None = None
    ) -> None:
        """Record a step in `state` and hand it to `on_step`."""
        step = state.new_step(kind, content, usage)
        if self.on_step is not None:
            await self.on_step(step)

    async def checkpoint(self, state: RunState) -> None:
        """Hand `state` to `on_checkpoint`."""
        if self.on_checkpoint is not None:
            await self.on_checkpoint(state)


class AgentLoop:
    """Runs one task with an LLM and a tool executor under `settings`; every step goes to its `on_step`.

    A run resumed from a checkpoint (`resume`) repeats at most the tool calls that were in flight.
    """

    name = "function_calling"

    def __init__(self, llm: LLMClient, tools: ToolExecutor, settings: LoopSettings) -> None:
        self.llm = llm
        self.tools = tools
        self.settings = settings

    def config(self) -> dict[str, Any]:
        """The subset of the agent's configuration recorded in its runs."""
        return self.settings.run_config(self.name, self.tools)

    async def start(self, task: str) -> RunState:
        """Run `task` until a final answer, a failure, or a question to a human."""
        state = RunState(
            config=self.config(),
            messages=[Message.system(self.settings.system_prompt).to_dict(), Message.user(task).to_dict()],
        )
        return await self._run(state)

    async def resume(
        self, state: RunState, human_answer: str | None = None, *, request_id: str | None = None
    ) -> RunState:
        """Continue a checkpoint; a `waiting_human` run needs the answer (to `request_id`, else the first)."""
        if state.finished:
            raise RunNotResumable(f"the run has already {state.status}", status=state.status)
        state = state.copy()
        if state.status == "waiting_human":
            if human_answer is None:
                raise RunNotResumable("the run is waiting for a human answer; pass human_answer=")
            await self._answer(state, human_answer, request_id=request_id)
            if state.waiting_for:
                return state
            state.status = "running"
        elif human_answer is not None:
            raise RunNotResumable("the run is not waiting for a human answer", status=state.status)
        return await self._run(state)

    async def _answer(self, state: RunState, human_answer: str, *, request_id: str | None = None) -> None:
        """Put a human's answer into `state` as the tool message of the call that asked."""
        waiting = state.waiting_for
        chosen = [c for c in waiting if request_id is None or c.request_id == request_id][:1]
        if not chosen:
            known = [c.request_id for c in waiting]
            raise RunNotResumable(f"the run does not wait for request {request_id!r} (it waits for {known})")
        call = chosen[0]
        state.messages.append(Message.tool(call.id, human_answer).to_dict())
        state.pending.remove(call)
        await self._emit(
            state, "human", {"call_id": call.id, "request_id": call.request_id, "answer": human_answer}
        )

    async def _run(self, state: RunState) -> RunState:
        schemas = self.tools.tool_schemas()
        checker = ArgumentChecker(schemas)  # cheap: each schema is checked off the loop, at its first call
        max_steps, max_repairs = self.settings.max_steps, self.settings.max_repairs
        while True:
            if state.pending:
                await self._execute_pending(state, checker)
                if state.waiting_for:
                    state.status = "waiting_human"
                    return state
                await self._checkpoint(state)
            if state.step_count >= max_steps:
                return await self._fail(
                    state,
                    MaxStepsExceeded(
                        f"no final answer after {state.step_count} model turns (max_steps={max_steps})",
                        max_steps=max_steps,
                    ),
                )
            try:
                turn = await self.llm.complete(state.messages, schemas or None)
            except LLMError as exc:
                return await self._fail(state, exc)
            state.step_count += 1
            state.usage += turn.usage
            state.messages.append(turn.to_message())
            await self._emit(state, "model", _turn_content(turn), turn.usage)
            if not turn.tool_calls:
                state.status = "succeeded"
                state.answer = turn.content or ""
                await self._emit(state, "final", {"answer": state.answer})
                return state
            well_formed = await self._screen(state, checker, turn.tool_calls)
            if well_formed is None:
                return await self._fail(
                    state,
                    RepairBudgetExceeded(
                        f"the model sent malformed tool calls {state.repairs} turns in a row "
                        f"(max_repairs={max_repairs})",
                        max_repairs=max_repairs,
                    ),
                )
            state.pending = [PendingCall(c.id, c.name, c.arguments) for c in well_formed]
            await self._checkpoint(state)

    async def _screen(
        self, state: RunState, checker: ArgumentChecker, calls: tuple[ToolCall, ...]
    ) -> list[ToolCall] | None:
        """The well-formed calls of a turn; malformed ones are answered with an error to repair.

        None when the repair budget is spent.
        """
        good: list[ToolCall] = []
        bad: list[tuple[ToolCall, MalformedCall]] = []
        for call in calls:
            try:
                await checker.check_off_loop(call.name, call.arguments)
                good.append(call)
            except MalformedCall as exc:
                bad.append((call, exc))
        if not bad:
            state.repairs = 0
            return good
        state.repairs += 1
        for call, problem in bad:
            state.messages.append(Message.tool(call.id, problem.message).to_dict())
            await self._emit(state, "tool", _call_content(call, ToolOutcome.failure(problem.message), True))
        if state.repairs > self.settings.max_repairs:
            for call in good:  # keep the transcript well-formed: every call gets an answer
                state.messages.append(Message.tool(call.id, "Not run: the run stopped.").to_dict())
            return None
        return good

    async def _execute_pending(self, state: RunState, checker: ArgumentChecker) -> None:
        """Run the pending calls that do not wait for a human, concurrently."""
        to_run = [call for call in state.pending if call.request_id is None]
        outcomes = await asyncio.gather(*(self._call(checker, call) for call in to_run))
        for call, outcome in zip(to_run, outcomes, strict=True):
            wait = outcome.waiting_human
            if wait is not None:
                call.request_id, call.question = wait.request_id, wait.question
                content = {"call_id": call.id, "request_id": wait.request_id, "question": wait.question}
                await self._emit(state, "human", {**content, "context": wait.context})
                continue
            state.messages.append(Message.tool(call.id, outcome.content).to_dict())
            state.pending.remove(call)
            await self._emit(state, "tool", _call_content(call.to_tool_call(), outcome, False))

    async def _call(self, checker: ArgumentChecker, call: PendingCall) -> ToolOutcome:
        try:
            arguments = await checker.check_off_loop(call.name, call.arguments)
            return await self.tools.call(call.name, arguments)
        except ToolServerError as exc:
            return ToolOutcome.failure(f"Error: {exc.message}")
        except Exception as exc:
            return ToolOutcome.failure(f"Error: {type(exc).__name__}: {exc}")

    async def _fail(self, state: RunState, error: ToolServerError) -> RunState:
        state.status = "failed"
        state.error = error.to_dict()
        await self._emit(state, "error", {"error": state.error})
        return state

    async def _checkpoint(self, state: RunState) -> None:
        await self.settings.checkpoint(state)

    async def _emit(
        self, state: RunState, kind: StepKind, content: dict[str, Any], usage: Usage | None = None
    ) -> None:
        await self.settings.emit(state, kind, content, usage)


def _turn_content(turn: AssistantTurn) -> dict[str, Any]:
    return {
        "content": turn.content,
        "tool_calls": [call.to_dict() for call in turn.tool_calls],
        "finish_reason": turn.finish_reason,
    }


def _call_content(call: ToolCall, outcome: ToolOutcome, malformed: bool) -> dict[str, Any]:
    return {
        "call_id": call.id,
        "name": call.name,
        "arguments": call.arguments,
        "ok": outcome.ok,
        "content": outcome.content,
        "malformed": malformed,
    }
