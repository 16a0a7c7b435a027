"""The LLM seam: OpenAI chat-format messages, one assistant turn, and the client interface."""

from __future__ import annotations

import abc
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["AssistantTurn", "LLMClient", "Message", "Role", "ToolCall", "Usage"]

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True)
class ToolCall:
    """One function call requested by the model; `arguments` is the raw JSON string it sent."""

    id: str
    name: str
    arguments: str = "{}"

    def to_dict(self) -> dict[str, Any]:
        """The call in OpenAI's wire form."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToolCall:
        """A call from OpenAI's wire form."""
        function = data.get("function") or {}
        return cls(id=data["id"], name=function.get("name", ""), arguments=function.get("arguments") or "")


@dataclass(frozen=True)
class Usage:
    """Token counts reported by the endpoint (zero when it reports none)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Prompt and completion tokens together."""
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens
        )

    def to_dict(self) -> dict[str, int]:
        """The counts as JSON."""
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Usage:
        """Counts from an endpoint's `usage` object (zeros for what it omits)."""
        data = data or {}
        return cls(int(data.get("prompt_tokens") or 0), int(data.get("completion_tokens") or 0))


@dataclass(frozen=True)
class Message:
    """One chat message; `to_dict()` gives the wire form that `LLMClient.complete` takes."""

    role: Role
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "tool_calls", tuple(self.tool_calls))

    @classmethod
    def system(cls, content: str) -> Message:
        """A system message."""
        return cls("system", content)

    @classmethod
    def user(cls, content: str) -> Message:
        """A user message."""
        return cls("user", content)

    @classmethod
    def assistant(cls, content: str | None, tool_calls: Iterable[ToolCall] = ()) -> Message:
        """An assistant message, with the tool calls it made."""
        return cls("assistant", content, tuple(tool_calls))

    @classmethod
    def tool(cls, tool_call_id: str, content: str) -> Message:
        """A tool's answer to the call `tool_call_id`."""
        return cls("tool", content, tool_call_id=tool_call_id)

    def to_dict(self) -> dict[str, Any]:
        """The message in OpenAI's wire form."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [call.to_dict() for call in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            out["name"] = self.name
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Message:
        """A message from OpenAI's wire form."""
        return cls(
            role=data["role"],
            content=data.get("content"),
            tool_calls=tuple(ToolCall.from_dict(c) for c in data.get("tool_calls") or ()),
            tool_call_id=data.get("tool_call_id"),
            name=data.get("name"),
        )


@dataclass(frozen=True)
class AssistantTurn:
    """What the model said in one turn: text, tool calls (possibly parallel), or both."""

    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = field(default_factory=Usage)
    finish_reason: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "tool_calls", tuple(self.tool_calls))

    def to_message(self) -> dict[str, Any]:
        """The assistant message to append to the conversation."""
        return Message.assistant(self.content, self.tool_calls).to_dict()


class LLMClient(abc.ABC):
    """A chat model that may call tools. Implementations: OpenAI-compatible HTTP, scripted."""

    @abc.abstractmethod
    async def complete(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> AssistantTurn:
        """One assistant turn for `messages`; `tools` in OpenAI `tools=[...]` format."""

    async def aclose(self) -> None:
        """Release connections; the default has none."""
        return None
