"""The scripted model: replay, recording, helper constructors, and a clear end of script."""

from __future__ import annotations

import json
import pickle

import pytest

from agent_core import AssistantTurn, Message, ScriptedModel, ScriptExhausted, ToolCall, Usage
from agent_core.llm import call, calls, reply, tool_call
from foundation.errors import UserError

MESSAGES = [Message.system("be brief").to_dict(), Message.user("hi").to_dict()]


def test_helpers_build_openai_shaped_turns() -> None:
    text = reply("done")
    assert (text.content, text.tool_calls, text.finish_reason) == ("done", (), "stop")

    single = call("add", a=1, b=2)
    assert single.finish_reason == "tool_calls"
    assert [c.name for c in single.tool_calls] == ["add"]
    assert json.loads(single.tool_calls[0].arguments) == {"a": 1, "b": 2}

    parallel = calls(("add", {"a": 1}), ("mul", "{not json"), ToolCall("fixed", "noop", "{}"))
    assert [c.name for c in parallel.tool_calls] == ["add", "mul", "noop"]
    assert parallel.tool_calls[1].arguments == "{not json"
    assert parallel.tool_calls[2].id == "fixed"
    ids = [c.id for c in parallel.tool_calls]
    assert len(set(ids)) == 3

    message = parallel.to_message()
    assert message["role"] == "assistant"
    assert message["tool_calls"][0] == {
        "id": ids[0],
        "type": "function",
        "function": {"name": "add", "arguments": '{"a": 1}'},
    }
    assert tool_call("x", id="c1") == ToolCall("c1", "x", "{}")


def test_message_round_trips_through_wire_form() -> None:
    original = Message.assistant("thinking", [ToolCall("c1", "add", '{"a": 1}')])
    assert Message.from_dict(original.to_dict()) == original
    assert Message.tool("c1", "3").to_dict() == {"role": "tool", "content": "3", "tool_call_id": "c1"}
    assert Usage(3, 4) + Usage(1, 1) == Usage(4, 5)
    assert Usage(3, 4).total_tokens == 7


async def test_replays_in_order_and_records_conversations() -> None:
    model = ScriptedModel([call("add", a=1, b=2), "the answer is 3"])
    tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
    messages = list(MESSAGES)

    first = await model.complete(messages, tools)
    assert first.tool_calls[0].name == "add"
    messages.append(first.to_message())
    messages[0]["content"] = "mutated after the call"
    second = await model.complete(messages)

    assert second == AssistantTurn("the answer is 3", finish_reason="stop")
    assert model.calls_made == 2
    assert model.remaining == 0
    assert model.conversations[0][0]["content"] == "be brief"  # a copy, not the caller's list
    assert model.conversations[1][-1]["role"] == "assistant"
    assert model.tools_seen == [tools, None]
    assert model.last_messages is model.conversations[-1]


async def test_callable_replies_see_the_messages() -> None:
    async def echo_async(messages: list[dict]) -> str:
        return f"async saw {len(messages)}"

    model = ScriptedModel([lambda messages: reply(messages[-1]["content"].upper()), echo_async])
    assert (await model.complete(MESSAGES)).content == "HI"
    assert (await model.complete(MESSAGES)).content == "async saw 2"


async def test_from_function_never_runs_out() -> None:
    model = ScriptedModel.from_function(lambda messages: f"turn with {len(messages)} messages")
    for _ in range(5):
        assert (await model.complete(MESSAGES)).content == "turn with 2 messages"
    assert model.calls_made == 5


async def test_running_out_is_a_clear_error() -> None:
    model = ScriptedModel(["only one"])
    await model.complete(MESSAGES)
    with pytest.raises(ScriptExhausted, match=r"ran out of replies: all 1 were used.*turn 2") as caught:
        await model.complete(MESSAGES)
    assert isinstance(caught.value, UserError)
    copy = pickle.loads(pickle.dumps(caught.value))
    assert type(copy) is ScriptExhausted
    assert copy.message == caught.value.message
    assert copy.to_dict()["type"] == "script_exhausted"


async def test_a_reply_of_the_wrong_type_is_refused() -> None:
    model = ScriptedModel([lambda messages: 42])  # type: ignore[list-item, return-value]
    with pytest.raises(TypeError, match="AssistantTurn or str"):
        await model.complete(MESSAGES)
