"""Plan and execute: the model plans subtasks, an inner loop runs each, the model revises the rest.

`RunState.strategy` holds `task`, the remaining `plan`, the `done` results and the paused `inner`
run (if any); the subtask being worked on is always `plan[0]`.
"""

from __future__ import annotations

import json
from typing import Any

from agent_core.errors import PlanningFailed
from agent_core.llm.base import LLMClient, Message
from agent_core.loop import LoopSettings
from agent_core.state import RunState
from agent_core.strategies.base import OuterLoop, extract_json
from agent_core.tools import ToolExecutor

__all__ = ["PlanAndExecute", "parse_plan"]

_PLANNER_SYSTEM = (
    "You plan work for an agent that can use these tools: {tools}.\n"
    "The agent works under these instructions:\n{system_prompt}\n\n"
    "When asked for a plan, reply with only a JSON list of strings, one short self-contained subtask "
    'each, in order, e.g. ["Find X", "Compute Y from X"].'
)
_PLAN_PROMPT = "Task: {task}\n\nWrite the plan: a JSON list of subtasks."
_REVISE_PROMPT = (
    "Subtask {number} ({subtask}) {status}. Result:\n{result}\n\n"
    "Remaining plan: {remaining}\n\nRevise the remaining plan given this result. Reply with only the JSON "
    "list of subtasks still to do; reply [] if the task is complete."
)
_RETRY_PROMPT = "That reply was not usable ({reason}). Reply with only a JSON list of strings."
_SUMMARY_PROMPT = (
    "All subtasks are done. Results:\n{results}\n\nWrite the final answer to the task: {task}\n"
    "Reply with the answer only."
)
_SUBTASK_PROMPT = "Overall task: {task}\n\n{progress}Your current subtask: {subtask}\nDo only this subtask and reply with its result."
_ITEM_KEYS = ("task", "subtask", "description", "step", "title", "name")
_LIST_KEYS = ("plan", "subtasks", "steps", "tasks", "remaining")


def parse_plan(text: str) -> list[str]:
    """Subtasks from a reply: a JSON list of strings or of objects, possibly wrapped or fenced."""
    value = extract_json(text)
    if isinstance(value, dict):
        value = next((value[k] for k in _LIST_KEYS if isinstance(value.get(k), list)), value)
    if not isinstance(value, list):
        raise ValueError(f"expected a JSON list, got {type(value).__name__}")
    plan: list[str] = []
    for item in value:
        if isinstance(item, dict):
            item = next((item[k] for k in _ITEM_KEYS if isinstance(item.get(k), str)), None)
        if not isinstance(item, str) or not item.strip():
            raise ValueError("every subtask must be a non-empty string")
        plan.append(item.strip())
    return plan


class PlanAndExecute(OuterLoop):
    """Plan, run each subtask with an inner loop, revise the remaining plan after each, summarise."""

    name = "plan_execute"

    def __init__(
        self,
        llm: LLMClient,
        tools: ToolExecutor,
        settings: LoopSettings,
        *,
        max_plan_retries: int = 2,
        max_subtasks: int = 10,
    ) -> None:
        super().__init__(llm, tools, settings)
        self.max_plan_retries = max_plan_retries
        self.max_subtasks = max_subtasks

    def _options(self) -> dict[str, Any]:
        return {"max_plan_retries": self.max_plan_retries, "max_subtasks": self.max_subtasks}

    async def start(self, task: str) -> RunState:
        """Plan `task`, then work through the plan."""
        config = self.config()
        planner = _PLANNER_SYSTEM.format(
            tools=", ".join(config["tools"]) or "none", system_prompt=self.settings.system_prompt
        )
        state = RunState(
            config=config,
            messages=[Message.system(planner).to_dict()],
            strategy={"task": task, "plan": [], "done": [], "inner": None},
        )
        plan = await self._plan(state, _PLAN_PROMPT.format(task=task), allow_empty=False)
        if plan is None:
            return state
        state.strategy["plan"] = plan
        return await self._continue(state, None, None)

    async def _continue(self, state: RunState, answer: str | None, request_id: str | None) -> RunState:
        progress = state.strategy
        while progress["plan"]:
            if len(progress["done"]) >= self.max_subtasks:
                error = PlanningFailed(f"the plan did not finish within max_subtasks={self.max_subtasks}")
                return await self._fail(state, error)
            subtask = progress["plan"][0]
            number = len(progress["done"]) + 1
            inner = await self._run_inner(
                state,
                self._subtask_prompt(progress, subtask),
                self.settings.system_prompt,
                {"subtask": number},
                answer,
                request_id,
            )
            answer = request_id = None
            if state.status == "waiting_human":
                return state
            ok = inner.status == "succeeded"
            result = inner.answer if ok else (inner.error or {}).get("message", "failed")
            progress["done"].append({"subtask": subtask, "ok": ok, "result": result})
            remaining = progress["plan"][1:]
            prompt = _REVISE_PROMPT.format(
                number=number,
                subtask=json.dumps(subtask),
                status="succeeded" if ok else "failed",
                result=result,
                remaining=json.dumps(remaining),
            )
            revised = await self._plan(state, prompt, allow_empty=True)
            if revised is None:
                return state
            progress["plan"] = revised
        results = "\n".join(
            f"{i}. {d['subtask']} -> {'ok' if d['ok'] else 'FAILED'}: {d['result']}"
            for i, d in enumerate(progress["done"], 1)
        )
        turn = await self._ask(state, _SUMMARY_PROMPT.format(results=results, task=progress["task"]))
        if turn is None:
            return state
        return await self._succeed(state, turn.content or "")

    async def _plan(self, state: RunState, prompt: str, *, allow_empty: bool) -> list[str] | None:
        """Ask for a plan, re-asking a bounded number of times on an unusable reply."""
        for _ in range(self.max_plan_retries + 1):
            turn = await self._ask(state, prompt)
            if turn is None:
                return None
            try:
                plan = parse_plan(turn.content or "")
                if not plan and not allow_empty:
                    raise ValueError("the plan is empty")
            except ValueError as exc:
                prompt = _RETRY_PROMPT.format(reason=exc)
                continue
            await self._emit(state, "plan", {"plan": plan, "done": len(state.strategy["done"])})
            return plan
        error = PlanningFailed(f"no usable plan after {self.max_plan_retries + 1} replies")
        await self._fail(state, error)
        return None

    @staticmethod
    def _subtask_prompt(progress: dict[str, Any], subtask: str) -> str:
        done = progress["done"]
        lines = "".join(f"- {d['subtask']}: {d['result']}\n" for d in done)
        prefix = f"Results of the subtasks done so far:\n{lines}\n" if done else ""
        return _SUBTASK_PROMPT.format(task=progress["task"], progress=prefix, subtask=subtask)
