"""Reflection (Reflexion): try, judge, critique what went wrong, retry with the lessons in the prompt.

An attempt fails when its inner run fails or when the model's own verdict on the answer is negative.
Critiques go to a `CritiqueMemory`, and the most recent ones are put into the next attempt's system
prompt. `RunState.strategy` holds `task`, the current `attempt`, its `system_prompt` and the paused
`inner` run (if any).
"""

from __future__ import annotations

import collections
import json
from typing import Any, Protocol, runtime_checkable

from agent_core.errors import AttemptsExhausted
from agent_core.llm.base import LLMClient, Message
from agent_core.loop import LoopSettings
from agent_core.state import RunState
from agent_core.strategies.base import OuterLoop, extract_json
from agent_core.tools import ToolExecutor

__all__ = ["CritiqueMemory", "InMemoryCritiqueMemory", "Reflection", "parse_verdict"]

_REVIEWER_SYSTEM = (
    "You review an agent's attempts at a task, judge whether an answer solves it, and write short "
    "critiques that help the next attempt."
)
_VERDICT_PROMPT = (
    "Task: {task}\n\nAttempt {attempt} answered:\n{answer}\n\nDoes this answer fully and correctly solve "
    'the task? Reply with only a JSON object: {{"success": true or false, "reason": "..."}}'
)
_CRITIQUE_PROMPT = (
    "Task: {task}\n\nAttempt {attempt} failed: {reason}\n\nWhat it did:\n{trace}\n\n"
    "In at most three sentences, say what went wrong and what to do differently next time. "
    "Reply with the critique only."
)
_LESSONS = "\n\nLessons from earlier attempts at tasks like this one:\n{lessons}"
_TRACE_CHARS = 3000


@runtime_checkable
class CritiqueMemory(Protocol):
    """Where critiques are kept between attempts (and runs)."""

    async def add(self, text: str) -> None:
        """Keep a critique."""
        ...

    async def recent(self, k: int) -> list[str]:
        """Up to `k` critiques, oldest first."""
        ...


class InMemoryCritiqueMemory:
    """A bounded in-process `CritiqueMemory`."""

    def __init__(self, max_items: int = 100) -> None:
        self._items: collections.deque[str] = collections.deque(maxlen=max_items)

    async def add(self, text: str) -> None:
        """Keep a critique (the oldest goes past `max_items`)."""
        self._items.append(text)

    async def recent(self, k: int) -> list[str]:
        """Up to `k` critiques, oldest first."""
        return list(self._items)[-k:] if k > 0 else []


def parse_verdict(text: str) -> tuple[bool, str] | None:
    """`(success, reason)` from a verdict reply, or None when it says neither."""
    try:
        value = extract_json(text)
    except ValueError:
        value = None
    if isinstance(value, dict) and isinstance(value.get("success"), bool):
        return value["success"], str(value.get("reason") or "")
    first = text.strip().lower().split(maxsplit=1)[:1]
    word = first[0].strip(".,:!") if first else ""
    if word in ("yes", "true", "pass", "passed", "success", "correct"):
        return True, text.strip()
    if word in ("no", "false", "fail", "failed", "failure", "incorrect"):
        return False, text.strip()
    return None


class Reflection(OuterLoop):
    """Up to `max_attempts` inner runs; each failure adds a critique that the next attempt sees."""

    name = "reflection"

    def __init__(
        self,
        llm: LLMClient,
        tools: ToolExecutor,
        settings: LoopSettings,
        *,
        memory: CritiqueMemory | None = None,
        max_attempts: int = 3,
        critiques_k: int = 3,
    ) -> None:
        super().__init__(llm, tools, settings)
        self.memory: CritiqueMemory = memory if memory is not None else InMemoryCritiqueMemory()
        self.max_attempts = max_attempts
        self.critiques_k = critiques_k

    def _options(self) -> dict[str, Any]:
        return {"max_attempts": self.max_attempts, "critiques_k": self.critiques_k}

    async def start(self, task: str) -> RunState:
        """First attempt at `task`, then judge, critique and retry up to `max_attempts`."""
        state = RunState(
            config=self.config(),
            messages=[Message.system(_REVIEWER_SYSTEM).to_dict()],
            strategy={"task": task, "attempt": 1, "system_prompt": None, "inner": None, "reasons": []},
        )
        return await self._continue(state, None, None)

    async def _continue(self, state: RunState, answer: str | None, request_id: str | None) -> RunState:
        progress = state.strategy
        while progress["attempt"] <= self.max_attempts:
            attempt = progress["attempt"]
            if progress["inner"] is None:
                progress["system_prompt"] = await self._attempt_prompt()
            inner = await self._run_inner(
                state, progress["task"], progress["system_prompt"], {"attempt": attempt}, answer, request_id
            )
            answer = request_id = None
            if state.status == "waiting_human":
                return state
            verdict = await self._verdict(state, inner, attempt)
            if verdict is None:
                return state
            success, reason = verdict
            if success:
                return await self._succeed(state, inner.answer or "")
            turn = await self._ask(
                state,
                _CRITIQUE_PROMPT.format(
                    task=progress["task"], attempt=attempt, reason=reason, trace=_trace(inner)
                ),
            )
            if turn is None:
                return state
            critique = (turn.content or "").strip() or reason
            await self.memory.add(critique)
            await self._emit(state, "critique", {"attempt": attempt, "reason": reason, "critique": critique})
            progress["reasons"].append(reason)
            progress["attempt"] = attempt + 1
        error = AttemptsExhausted(
            f"no attempt succeeded in {self.max_attempts}; last: {progress['reasons'][-1] if progress['reasons'] else '-'}",
            attempts=self.max_attempts,
        )
        return await self._fail(state, error)

    async def _attempt_prompt(self) -> str:
        lessons = await self.memory.recent(self.critiques_k)
        if not lessons:
            return self.settings.system_prompt
        return self.settings.system_prompt + _LESSONS.format(lessons="\n".join(f"- {c}" for c in lessons))

    async def _verdict(self, state: RunState, inner: RunState, attempt: int) -> tuple[bool, str] | None:
        """Failed runs fail; a finished answer is judged by the model. None when the model failed.

        A verdict that says neither yes nor no accepts the answer rather than spend an attempt.
        """
        if inner.status != "succeeded":
            return False, (inner.error or {}).get("message", "the run failed")
        prompt = _VERDICT_PROMPT.format(task=state.strategy["task"], attempt=attempt, answer=inner.answer)
        turn = await self._ask(state, prompt)
        if turn is None:
            return None
        verdict = parse_verdict(turn.content or "") or (True, "no clear verdict; answer accepted")
        await self._emit(state, "critique", {"attempt": attempt, "success": verdict[0], "reason": verdict[1]})
        return verdict


def _trace(run: RunState) -> str:
    """A short account of an inner run: its tool calls, their results, and its end."""
    lines: list[str] = []
    for message in run.messages[2:]:
        if message["role"] == "assistant":
            for call in message.get("tool_calls") or ():
                function = call["function"]
                lines.append(f"called {function['name']}({function['arguments']})")
            if message.get("content"):
                lines.append(f"said: {message['content']}")
        elif message["role"] == "tool":
            lines.append(f"  -> {message.get('content')}")
    if run.error:
        lines.append(f"error: {json.dumps(run.error)}")
    text = "\n".join(lines)
    return text if len(text) <= _TRACE_CHARS else text[:_TRACE_CHARS] + "\n[... trace truncated]"
