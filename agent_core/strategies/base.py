"""The strategy seam (`Strategy`) and the machinery of strategies that drive inner loops (`OuterLoop`).

An outer loop keeps its own progress in `RunState.strategy`, so it pauses for a human and resumes like
the plain loop; the steps of its inner loops are re-numbered into the outer run and tagged.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any, ClassVar, Protocol, runtime_checkable

from agent_core.errors import LLMError, RunNotResumable
from agent_core.llm.base import AssistantTurn, LLMClient, Message, Usage
from agent_core.loop import AgentLoop, LoopSettings
from agent_core.state import PendingCall, RunState, Step, StepKind
from agent_core.tools import ToolExecutor
from foundation.errors import ToolServerError

__all__ = ["OuterLoop", "Strategy", "extract_json"]

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)


@runtime_checkable
class Strategy(Protocol):
    """Starts a run and resumes a checkpoint of it; `AgentLoop` is the simplest one."""

    async def start(self, task: str) -> RunState:
        """Run `task` until a final answer, a failure, or a question to a human."""
        ...

    async def resume(
        self, state: RunState, human_answer: str | None = None, *, request_id: str | None = None
    ) -> RunState:
        """Continue a checkpoint; a run that waits for a human needs `human_answer`."""
        ...


def extract_json(text: str) -> Any:
    """The first JSON value found in a model's reply: the whole text, a fenced block, or a bracketed span."""
    candidates = [text.strip(), *(m.strip() for m in _FENCE.findall(text))]
    spans = [(text.find(opening), text.rfind(closing)) for opening, closing in ("[]", "{}")]
    candidates += [text[start : end + 1] for start, end in sorted(spans) if 0 <= start < end]
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    raise ValueError("no JSON value found in the reply")


class OuterLoop:
    """Shared machinery of strategies that run inner `AgentLoop`s and talk to the model themselves."""

    name: ClassVar[str]

    def __init__(self, llm: LLMClient, tools: ToolExecutor, settings: LoopSettings) -> None:
        self.llm = llm
        self.tools = tools
        self.settings = settings

    def _options(self) -> dict[str, Any]:
        return {}

    def config(self) -> dict[str, Any]:
        """The subset of the agent's configuration recorded in its runs, the strategy's options included."""
        return {**self.settings.run_config(self.name, self.tools), **self._options()}

    async def resume(
        self, state: RunState, human_answer: str | None = None, *, request_id: str | None = None
    ) -> RunState:
        """Continue a checkpoint; a `waiting_human` run needs the answer for its current inner run."""
        if state.finished:
            raise RunNotResumable(f"the run has already {state.status}", status=state.status)
        if (state.status == "waiting_human") != (human_answer is not None):
            wanted = "needs human_answer=" if human_answer is None else "is not waiting for a human"
            raise RunNotResumable(f"the run {wanted}", status=state.status)
        state = state.copy()
        state.status = "running"
        return await self._continue(state, human_answer, request_id)

    async def _continue(self, state: RunState, answer: str | None, request_id: str | None) -> RunState:
        raise NotImplementedError

    async def _run_inner(
        self,
        state: RunState,
        task: str,
        system_prompt: str,
        tag: dict[str, Any],
        answer: str | None = None,
        request_id: str | None = None,
    ) -> RunState:
        """Start the current inner run, or resume the saved one; a pause is mirrored in `state`."""

        async def forward(step: Step) -> None:
            if step.usage is not None:
                state.usage += step.usage
            await self._emit(state, step.kind, {**step.content, **tag}, step.usage)

        async def checkpoint(inner: RunState) -> None:
            # The outer state with the inner run's progress: resuming it resumes the inner run there.
            if self.settings.on_checkpoint is not None:
                state.strategy["inner"] = inner.to_dict()
                await self.settings.on_checkpoint(state)

        inner_settings = replace(
            self.settings, system_prompt=system_prompt, on_step=forward, on_checkpoint=checkpoint
        )
        loop = AgentLoop(self.llm, self.tools, inner_settings)
        saved = state.strategy.get("inner")
        if saved is not None:
            inner = RunState.from_dict(saved)
            inner = await loop.resume(inner, answer, request_id=request_id)
        else:
            inner = await loop.start(task)
        if inner.status == "waiting_human":
            state.strategy["inner"] = inner.to_dict()
            state.pending = [PendingCall(**vars(call)) for call in inner.pending]
            state.status = "waiting_human"
        else:
            state.strategy["inner"] = None
            state.pending = []
        return inner

    async def _ask(self, state: RunState, prompt: str) -> AssistantTurn | None:
        """One tool-less turn of the strategy's own conversation; None when the model failed."""
        state.messages.append(Message.user(prompt).to_dict())
        try:
            turn = await self.llm.complete(state.messages, None)
        except LLMError as exc:
            await self._fail(state, exc)
            return None
        state.step_count += 1
        state.usage += turn.usage
        state.messages.append(Message.assistant(turn.content).to_dict())
        await self._emit(state, "model", {"content": turn.content, "role": self.name}, turn.usage)
        return turn

    async def _succeed(self, state: RunState, answer: str) -> RunState:
        state.status = "succeeded"
        state.answer = answer
        await self._emit(state, "final", {"answer": answer})
        return state

    async def _fail(self, state: RunState, error: ToolServerError) -> RunState:
        state.status = "failed"
        state.error = error.to_dict()
        await self._emit(state, "error", {"error": state.error})
        return state

    async def _emit(
        self, state: RunState, kind: StepKind, content: dict[str, Any], usage: Usage | None = None
    ) -> None:
        await self.settings.emit(state, kind, content, usage)
