"""The one `llm` config parser: both spellings of a scripted model, endpoints, and the fields errors name."""

from __future__ import annotations

import pytest

from agent_core.errors import ScriptExhausted
from agent_core.llm import Message, OpenAIConfig, ScriptedConfig, parse_llm_config
from foundation.errors import ValidationFailed
from toolserver.runs.llm import build_llm

SCRIPT = ["first", {"tool_calls": [{"name": "shell", "arguments": {"command": "ls"}}], "content": "looking"}]


def test_the_environment_spelling_is_the_scripted_provider() -> None:
    one = parse_llm_config({"provider": "scripted", "replies": SCRIPT})
    alias = parse_llm_config({"scripted": SCRIPT})
    assert isinstance(one, ScriptedConfig) and isinstance(alias, ScriptedConfig)
    shape = [(t.content, [(c.name, c.arguments) for c in t.tool_calls]) for t in one.replies]
    assert shape == [(t.content, [(c.name, c.arguments) for c in t.tool_calls]) for t in alias.replies]
    assert shape == [("first", []), ("looking", [("shell", '{"command": "ls"}')])]
    assert parse_llm_config({"scripted": [{"content": "only text"}]}).replies[0].content == "only text"  # type: ignore[union-attr]


async def test_the_two_scripted_models() -> None:
    script = parse_llm_config({"scripted": ["a", "b"]})
    assert isinstance(script, ScriptedConfig)
    conversation = [Message.user("hi").to_dict()]
    replayed = script.model()  # one script across conversations (an environment agent's acts)
    assert [(await replayed.complete(conversation)).content for _ in range(2)] == ["a", "b"]
    with pytest.raises(ScriptExhausted):
        await replayed.complete(conversation)
    resumable = script.resumable_model()  # by the conversation's assistant turns (a run resumed elsewhere)
    assert (await resumable.complete(conversation)).content == "a"
    after_one = [*conversation, {"role": "assistant", "content": "a"}, Message.user("more").to_dict()]
    assert (await resumable.complete(after_one)).content == "b"
    after_two = [*after_one, {"role": "assistant", "content": "b"}]
    assert (await resumable.complete(after_two)).content == "(the script has no more replies)"


def test_an_endpoint_config() -> None:
    parsed = parse_llm_config(
        {"base_url": "https://llm.example/v1", "model": "m", "timeout_s": 5, "api_key_env": "KEY"}
    )
    assert parsed == OpenAIConfig(
        base_url="https://llm.example/v1", model="m", timeout_s=5.0, api_key_env="KEY"
    )
    assert parsed.client_options() == {
        "base_url": "https://llm.example/v1",
        "model": "m",
        "timeout_s": 5.0,
        "max_retries": 4,
        "stream": False,
        "extra_body": None,
    }


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ([], "llm"),
        ({"provider": "nope"}, "llm.provider"),
        ({"provider": "scripted"}, "llm.replies"),
        ({"provider": "scripted", "replies": []}, "llm.replies"),
        ({"scripted": "not a list"}, "llm.scripted"),
        ({"scripted": [{"tool_calls": [{"arguments": {}}]}]}, "llm.scripted"),
        ({"scripted": [{"tool_calls": [{"name": "x", "arguments": [1]}]}]}, "llm.scripted"),
        ({"model": "m", "base_ur1": "https://typo.example"}, "llm.base_ur1"),
        ({"model": "m", "api_key": "a", "api_key_secret": "b"}, "llm.api_key_secret"),
        ({"model": "m", "timeout_s": "soon"}, "llm.timeout_s"),
        ({"model": 7}, "llm.model"),
        ({"model": "m", "extra_body": [1]}, "llm.extra_body"),
    ],
)
def test_bad_configs_name_their_field(config: object, field: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_llm_config(config)
    assert caught.value.field == field


async def test_agents_runs_take_both_spellings() -> None:
    for config in ({"provider": "scripted", "replies": ["x"]}, {"scripted": ["x"]}):
        model = build_llm(config)
        conversation = [Message.user("hi").to_dict()]
        assert [(await model.complete(conversation)).content for _ in range(2)] == ["x", "x"]  # resumable
    with pytest.raises(ValidationFailed) as caught:
        build_llm({"scripted": []})
    assert caught.value.field == "llm.scripted"
