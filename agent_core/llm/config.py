"""The one parser of an `llm` config, for agents' runs and environment agents alike.

    {"provider": "scripted", "replies": ["an answer", {"tool_calls": [{"name", "arguments"}], "content"?}]}
    {"provider": "openai", "base_url", "model", "timeout_s"?, "max_retries"?, "stream"?, "extra_body"?,
     and at most one of "api_key", "api_key_secret", "api_key_env"}     (provider defaults to "openai")

`{"scripted": [...]}` is accepted as another spelling of the scripted form (environment agents used it).
Errors are `ValidationFailed` naming the field under the caller's prefix (`llm`, `config.llm`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent_core.llm.base import AssistantTurn
from agent_core.llm.scripted import ScriptedModel, calls, reply
from foundation.errors import ValidationFailed

__all__ = ["KEY_SOURCES", "LLMConfig", "OpenAIConfig", "ScriptedConfig", "parse_llm_config"]

KEY_SOURCES = ("api_key", "api_key_secret", "api_key_env")
"""Where an OpenAI-compatible client's key may come from; a config names at most one."""
_SCRIPTED_ALIAS = "scripted"
_ENDPOINT_KEYS = frozenset(
    {"base_url", "model", "timeout_s", "max_retries", "stream", "extra_body", *KEY_SOURCES}
)
_KNOWN_KEYS = _ENDPOINT_KEYS | {"provider", "replies", _SCRIPTED_ALIAS}
_NO_MORE_REPLIES = "(the script has no more replies)"


@dataclass(frozen=True)
class ScriptedConfig:
    """A scripted model: its replies, in order."""

    replies: tuple[AssistantTurn, ...]

    def model(self) -> ScriptedModel:
        """A model that answers with the next reply across all its conversations, then raises ScriptExhausted."""
        return ScriptedModel(self.replies)

    def resumable_model(self) -> ScriptedModel:
        """A model that picks the reply by how many assistant turns the conversation already has, without end.

        A run resumed from a checkpoint in a new process continues the script where it stopped.
        """
        turns = self.replies

        def next_turn(messages: list[dict[str, Any]]) -> AssistantTurn:
            done = sum(1 for m in messages if m.get("role") == "assistant")
            return turns[done] if done < len(turns) else reply(_NO_MORE_REPLIES)

        return ScriptedModel.from_function(next_turn)


@dataclass(frozen=True)
class OpenAIConfig:
    """An OpenAI-compatible endpoint and where its key comes from (at most one of `KEY_SOURCES`)."""

    base_url: str | None = None
    model: str | None = None
    timeout_s: float = 60.0
    max_retries: int = 4
    stream: bool = False
    extra_body: Mapping[str, Any] | None = None
    api_key: str | None = None
    api_key_secret: str | None = None
    api_key_env: str | None = None

    def client_options(self) -> dict[str, Any]:
        """The keyword arguments of `OpenAICompatibleClient` that the config sets (the key aside)."""
        return {
            "base_url": self.base_url,
            "model": self.model,
            "timeout_s": self.timeout_s,
            "max_retries": self.max_retries,
            "stream": self.stream,
            "extra_body": dict(self.extra_body) if self.extra_body is not None else None,
        }


LLMConfig = ScriptedConfig | OpenAIConfig


def parse_llm_config(config: Any, *, field: str = "llm") -> LLMConfig:
    """The typed form of an `llm` JSON object; ValidationFailed naming `field` + the key that is wrong."""
    if not isinstance(config, Mapping):
        raise ValidationFailed("llm must be a JSON object", field=field)
    unknown = sorted(str(key) for key in config if key not in _KNOWN_KEYS)
    if unknown:
        raise ValidationFailed(f"unknown llm setting {unknown[0]!r}", field=f"{field}.{unknown[0]}")
    provider = config.get("provider", _SCRIPTED_ALIAS if _SCRIPTED_ALIAS in config else "openai")
    if provider == "scripted":
        return _scripted(config, field)
    if provider != "openai":
        raise ValidationFailed(
            "llm.provider must be 'openai' (any compatible server) or 'scripted'", field=f"{field}.provider"
        )
    given = [key for key in KEY_SOURCES if config.get(key)]
    if len(given) > 1:
        raise ValidationFailed(f"give one of {', '.join(given)}, not several", field=f"{field}.{given[1]}")
    extra_body = config.get("extra_body")
    if extra_body is not None and not isinstance(extra_body, Mapping):
        raise ValidationFailed("extra_body must be a JSON object", field=f"{field}.extra_body")
    return OpenAIConfig(
        base_url=_text(config, "base_url", field),
        model=_text(config, "model", field),
        timeout_s=_number(config, "timeout_s", 60.0, field),
        max_retries=int(_number(config, "max_retries", 4, field)),
        stream=bool(config.get("stream", False)),
        extra_body=extra_body,
        **{key: _text(config, key, field) or None for key in KEY_SOURCES},
    )


def _scripted(config: Mapping[str, Any], field: str) -> ScriptedConfig:
    key = "replies" if "replies" in config or _SCRIPTED_ALIAS not in config else _SCRIPTED_ALIAS
    replies = config.get(key)
    if not isinstance(replies, list) or not replies:
        raise ValidationFailed("a scripted llm needs a non-empty list of replies", field=f"{field}.{key}")
    return ScriptedConfig(tuple(_turn(item, f"{field}.{key}") for item in replies))


def _turn(item: Any, field: str) -> AssistantTurn:
    """One scripted reply: a string (the answer), `{"tool_calls": [{"name", "arguments"?}], "content"?}`, or
    `{"content"}`."""
    if isinstance(item, str):
        return reply(item)
    wanted = item.get("tool_calls") if isinstance(item, Mapping) else None
    if isinstance(wanted, list) and wanted and all(_is_call(c) for c in wanted):
        pairs = [(str(c["name"]), _arguments(c.get("arguments"))) for c in wanted]
        content = item.get("content")
        return calls(*pairs, content=str(content) if content is not None else None)
    if isinstance(item, Mapping) and wanted is None and "content" in item:
        return reply(str(item["content"]))
    raise ValidationFailed(
        "a scripted reply is a string, {content} or {tool_calls: [{name, arguments}], content?}", field=field
    )


def _is_call(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and "name" in value
        and isinstance(value.get("arguments") or {}, Mapping | str)
    )


def _arguments(value: Any) -> dict[str, Any] | str:
    """A call's arguments: an object, or a string sent as the raw JSON (a script may send a malformed one)."""
    return value if isinstance(value, str) else dict(value or {})


def _text(config: Mapping[str, Any], key: str, field: str) -> str | None:
    value = config.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationFailed(f"{key} must be a string", field=f"{field}.{key}")
    return value


def _number(config: Mapping[str, Any], key: str, default: float, field: str) -> float:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValidationFailed(f"{key} must be a number of at least 0", field=f"{field}.{key}")
    return float(value)
