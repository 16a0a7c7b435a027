"""LLM clients from an agent's `llm` config: any OpenAI-compatible server, or a scripted model."""

from __future__ import annotations

import os
from typing import Any

from agent_core.llm import AssistantTurn, LLMClient, OpenAICompatibleClient, ScriptedModel, calls, reply
from toolserver.errors import ValidationFailed

__all__ = ["build_llm", "scripted_turn"]


def scripted_turn(item: Any) -> AssistantTurn:
    """One scripted reply: a string (final answer) or {"content"?, "tool_calls": [{"name", "arguments"}]}."""
    if isinstance(item, str):
        return reply(item)
    if isinstance(item, dict) and item.get("tool_calls"):
        pairs = [(c["name"], c.get("arguments") or {}) for c in item["tool_calls"]]
        return calls(*pairs, content=item.get("content"))
    if isinstance(item, dict) and "content" in item:
        return reply(str(item["content"]))
    raise ValidationFailed("a scripted reply is a string or {content, tool_calls}", field="llm.replies")


def _scripted(replies: list[Any]) -> LLMClient:
    turns = [scripted_turn(item) for item in replies]

    def next_turn(messages: list[dict[str, Any]]) -> AssistantTurn:
        # Chosen by how many assistant turns the conversation already has, so a run resumed after a
        # restart continues the script where it stopped.
        done = sum(1 for m in messages if m.get("role") == "assistant")
        if done >= len(turns):
            return reply("(the script has no more replies)")
        return turns[done]

    return ScriptedModel.from_function(next_turn)


def build_llm(config: dict[str, Any]) -> LLMClient:
    """`{"provider": "openai", "base_url", "model", "api_key_env"?, ...}` or `{"provider": "scripted", "replies"}`."""
    provider = config.get("provider", "openai")
    if provider == "scripted":
        replies = config.get("replies")
        if not isinstance(replies, list) or not replies:
            raise ValidationFailed("a scripted llm needs a non-empty replies list", field="llm.replies")
        return _scripted(replies)
    if provider != "openai":
        raise ValidationFailed(
            "llm.provider must be 'openai' (any compatible server) or 'scripted'", field="llm.provider"
        )
    api_key = config.get("api_key")
    if api_key is None and config.get("api_key_env"):
        api_key = os.environ.get(str(config["api_key_env"]))
    return OpenAICompatibleClient(
        base_url=config.get("base_url"),
        model=config.get("model"),
        api_key=api_key,
        timeout_s=float(config.get("timeout_s", 60)),
        max_retries=int(config.get("max_retries", 4)),
        stream=bool(config.get("stream", False)),
        extra_body=config.get("extra_body"),
    )
