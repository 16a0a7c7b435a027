"""LLM clients: the `LLMClient` seam, an OpenAI-compatible HTTP client, and a scripted fake."""

from __future__ import annotations

from agent_core.llm.base import AssistantTurn, LLMClient, Message, Role, ToolCall, Usage
from agent_core.llm.openai import OpenAICompatibleClient
from agent_core.llm.scripted import Reply, ScriptedModel, call, calls, reply, tool_call

__all__ = [
    "AssistantTurn",
    "LLMClient",
    "Message",
    "OpenAICompatibleClient",
    "Reply",
    "Role",
    "ScriptedModel",
    "ToolCall",
    "Usage",
    "call",
    "calls",
    "reply",
    "tool_call",
]
