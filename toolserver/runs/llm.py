"""LLM clients from an agent's `llm` config: any OpenAI-compatible server, or a scripted model."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from agent_core.llm import AssistantTurn, LLMClient, OpenAICompatibleClient, ScriptedModel, calls, reply
from toolserver.egress import EgressPolicy, GuardedTransport
from toolserver.errors import ValidationFailed

__all__ = ["LLMPolicy", "build_llm", "scripted_turn", "tenant_llm"]


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


@dataclass(frozen=True)
class LLMPolicy:
    """What the server lets an agent's `llm` config reach: endpoints under `egress`, and the server's own
    environment variables named in `key_envs` (`TOOLSERVER_LLM_KEY_ENVS`) as keys; none by default, since a
    tenant chooses the base_url the key is sent to."""

    egress: EgressPolicy = field(default_factory=EgressPolicy)
    key_envs: frozenset[str] = frozenset()


def build_llm(
    config: dict[str, Any], policy: LLMPolicy | None = None, *, secret: str | None = None
) -> LLMClient:
    """`{"provider": "openai", "base_url", "model", "api_key" | "api_key_secret" | "api_key_env", ...}` or
    `{"provider": "scripted", "replies"}`.

    `secret` is the value of the namespace secret named by `api_key_secret` (the caller resolves it; without it
    the config is only checked).
    """
    policy = policy or LLMPolicy()
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
    given = [key for key in ("api_key", "api_key_secret", "api_key_env") if config.get(key)]
    if len(given) > 1:
        raise ValidationFailed(f"give one of {', '.join(given)}, not several", field=f"llm.{given[1]}")
    options = {
        "base_url": config.get("base_url"),
        "model": config.get("model"),
        "timeout_s": float(config.get("timeout_s", 60)),
        "max_retries": int(config.get("max_retries", 4)),
        "stream": bool(config.get("stream", False)),
        "extra_body": config.get("extra_body"),
    }
    hint = (
        "store your key as a secret (PUT /v1/secrets/NAME) and name it in llm.api_key_secret (the CLI's "
        "--api-key-env does that from your own environment), or "
    )
    return tenant_llm(
        options,
        policy,
        api_key=str(config.get("api_key") or secret or ""),
        api_key_env=config.get("api_key_env"),
        field="llm",
        hint=hint,
    )


def tenant_llm(
    options: dict[str, Any],
    policy: LLMPolicy,
    *,
    api_key: str,
    api_key_env: str | None,
    field: str,
    hint: str = "",
) -> OpenAICompatibleClient:
    """An OpenAI-compatible client as the server lets a tenant have one: the endpoint under the egress policy,
    a key from the server's environment only where `key_envs` shares it, never the server's OPENAI_API_KEY.

    `field` prefixes the fields errors name (`llm`, `config.llm`); `hint` starts the advice of that error.
    """
    if api_key_env:
        if str(api_key_env) not in policy.key_envs:
            raise ValidationFailed(
                f"the server does not share its environment variable {api_key_env!r} as an LLM key; {hint}an "
                "operator lists the shared ones in TOOLSERVER_LLM_KEY_ENVS",
                field=f"{field}.api_key_env",
            )
        api_key = os.environ.get(str(api_key_env), "")
    if options.get("base_url") is not None:
        policy.egress.check_url(str(options["base_url"]), field=f"{field}.base_url")
    return OpenAICompatibleClient(**options, api_key=api_key, transport=GuardedTransport(policy.egress))
