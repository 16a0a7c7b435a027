"""LLM clients: the `LLMClient` seam, an OpenAI-compatible HTTP client, a scripted fake, and their config."""

from __future__ import annotations

from agent_core.llm.base import AssistantTurn, LLMClient, Message, Role, ToolCall, Usage
from agent_core.llm.config import LLMConfig, OpenAIConfig, ScriptedConfig, parse_llm_config
from agent_core.llm.openai import OpenAICompatibleClient
from agent_core.llm.scripted import Reply, ScriptedModel, call, calls, reply, tool_call

__all__ = [
    "AssistantTurn",
    "LLMClient",
    "LLMConfig",
    "Message",
    "OpenAICompatibleClient",
    "OpenAIConfig",
    "Reply",
    "Role",
    "ScriptedConfig",
    "ScriptedModel",
    "ToolCall",
    "Usage",
    "call",
    "calls",
    "parse_llm_config",
    "reply",
    "tool_call",
]
