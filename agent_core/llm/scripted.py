"""A scripted LLM for tests and demos: it replays given turns and records what it was shown."""

from __future__ import annotations

import copy
import inspect
import itertools
import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeAlias

from agent_core.errors import ScriptExhausted
from agent_core.llm.base import AssistantTurn, LLMClient, ToolCall

__all__ = ["Reply", "ScriptedModel", "call", "calls", "reply", "tool_call"]

_TurnLike: TypeAlias = AssistantTurn | str
Reply: TypeAlias = _TurnLike | Callable[[list[dict[str, Any]]], _TurnLike | Awaitable[_TurnLike]]
_ids = itertools.count(1)


def reply(text: str) -> AssistantTurn:
    """A final text answer."""
    return AssistantTurn(content=text, finish_reason="stop")


def tool_call(name: str, arguments: dict[str, Any] | str | None = None, *, id: str | None = None) -> ToolCall:
    """One call; a `str` is sent as the raw arguments, so a test can send malformed JSON."""
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments or {})
    return ToolCall(id=id or f"call_{next(_ids)}", name=name, arguments=raw)


def call(name: str, /, **arguments: Any) -> AssistantTurn:
    """A turn with a single tool call."""
    return calls((name, arguments))


def calls(*items: ToolCall | tuple[str, dict[str, Any] | str], content: str | None = None) -> AssistantTurn:
    """A turn with parallel tool calls, given as `ToolCall`s or `(name, arguments)` pairs."""
    made = tuple(item if isinstance(item, ToolCall) else tool_call(item[0], item[1]) for item in items)
    return AssistantTurn(content=content, tool_calls=made, finish_reason="tool_calls")


class ScriptedModel(LLMClient):
    """Answers each `complete()` with the next scripted reply.

    A reply is an `AssistantTurn`, a string (a final answer), or a callable that receives the
    messages and returns one of those (possibly awaitable). Every conversation seen is recorded.
    """

    def __init__(self, replies: Iterable[Reply] = ()) -> None:
        self._replies: list[Reply] = list(replies)
        self._function: Reply | None = None
        self.conversations: list[list[dict[str, Any]]] = []
        self.tools_seen: list[list[dict[str, Any]] | None] = []

    @classmethod
    def from_function(
        cls, fn: Callable[[list[dict[str, Any]]], _TurnLike | Awaitable[_TurnLike]]
    ) -> ScriptedModel:
        """A model that calls `fn(messages)` for every turn, without end."""
        model = cls()
        model._function = fn
        return model

    @property
    def calls_made(self) -> int:
        """How many turns the model has answered."""
        return len(self.conversations)

    @property
    def remaining(self) -> int:
        """Scripted replies not yet used (0 for a function model)."""
        return max(0, len(self._replies) - self.calls_made) if self._function is None else 0

    @property
    def last_messages(self) -> list[dict[str, Any]]:
        """The conversation of the latest call; ScriptExhausted before the first."""
        if not self.conversations:
            raise ScriptExhausted("the scripted model has not been called yet")
        return self.conversations[-1]

    async def complete(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> AssistantTurn:
        """The next scripted reply; ScriptExhausted when the script is used up."""
        index = self.calls_made
        if self._function is not None:
            step: Reply = self._function
        elif index < len(self._replies):
            step = self._replies[index]
        else:
            last = messages[-1] if messages else {}
            raise ScriptExhausted(
                f"ScriptedModel ran out of replies: all {len(self._replies)} were used, and turn "
                f"{index + 1} was requested after a {last.get('role')!r} message: "
                f"{str(last.get('content'))[:200]!r}",
                replies=len(self._replies),
            )
        seen = copy.deepcopy(messages)
        self.conversations.append(seen)
        self.tools_seen.append(copy.deepcopy(tools))
        result = step(copy.deepcopy(seen)) if callable(step) else step
        if inspect.isawaitable(result):
            result = await result
        return _as_turn(result)


def _as_turn(value: object) -> AssistantTurn:
    if isinstance(value, AssistantTurn):
        return value
    if isinstance(value, str):
        return reply(value)
    raise TypeError(f"a scripted reply must be an AssistantTurn or str, got {type(value).__name__}")
