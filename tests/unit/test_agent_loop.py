"""The function-calling loop with a scripted model and local tools: no mocks."""

from __future__ import annotations

import asyncio
import pickle
import time
from typing import Any

import pytest

from agent_core import (
    ASK_HUMAN_TOOL,
    AgentLoop,
    InvalidRunState,
    InvalidToolSchema,
    LLMError,
    LocalToolExecutor,
    LoopSettings,
    RunNotResumable,
    RunState,
    ScriptedModel,
    Step,
    ToolExecutor,
    Usage,
    ask_human_tool,
    call,
    calls,
    tool_call,
)
from agent_core.llm import AssistantTurn

NUMBERS = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
    "additionalProperties": False,
}


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


async def slow(tag: str) -> str:
    """Sleep for 0.2 s."""
    await asyncio.sleep(0.2)
    return f"slow {tag} done"


def broken() -> None:
    raise ValueError("the disk is full")


def make_tools(questions: list[tuple[str, str | None]] | None = None) -> LocalToolExecutor:
    def file_request(question: str, context: str | None) -> str:
        if questions is not None:
            questions.append((question, context))
        return f"hr_{len(questions or []) or 1}"

    tools = LocalToolExecutor([ask_human_tool(file_request)])
    tools.add(add, parameters=NUMBERS)
    tools.add(
        slow, parameters={"type": "object", "properties": {"tag": {"type": "string"}}, "required": ["tag"]}
    )
    tools.add(broken, parameters={"type": "object", "properties": {}})
    return tools


class Recorder:
    def __init__(self) -> None:
        self.steps: list[Step] = []

    async def __call__(self, step: Step) -> None:
        self.steps.append(step)

    @property
    def kinds(self) -> list[str]:
        return [step.kind for step in self.steps]


def tool_messages(messages: list[dict[str, Any]]) -> dict[str, str]:
    return {m["tool_call_id"]: m["content"] for m in messages if m["role"] == "tool"}


def make_loop(model: ScriptedModel, tools: ToolExecutor | None = None, **options: Any) -> AgentLoop:
    return AgentLoop(
        model, tools or make_tools(), LoopSettings(system_prompt="You are a calculator.", **options)
    )


async def test_tool_call_then_final_answer_with_steps_in_order() -> None:
    first = call("add", a=2, b=3)
    model = ScriptedModel([first, AssistantTurn("5", usage=Usage(10, 1))])
    recorder = Recorder()
    state = await make_loop(model, on_step=recorder).start("What is 2 + 3?")

    assert (state.status, state.answer, state.error) == ("succeeded", "5", None)
    assert state.step_count == 2
    assert state.usage == Usage(10, 1)
    assert tool_messages(model.conversations[1]) == {first.tool_calls[0].id: "5"}
    assert model.conversations[0][:2] == [
        {"role": "system", "content": "You are a calculator."},
        {"role": "user", "content": "What is 2 + 3?"},
    ]
    assert {t["function"]["name"] for t in model.tools_seen[0] or []} == {
        ASK_HUMAN_TOOL,
        "add",
        "slow",
        "broken",
    }
    assert recorder.kinds == ["model", "tool", "model", "final"]
    assert [s.index for s in recorder.steps] == [0, 1, 2, 3]
    assert recorder.steps[1].content["ok"] is True
    assert recorder.steps[3].content == {"answer": "5"}
    assert state.config["tools"] == [ASK_HUMAN_TOOL, "add", "slow", "broken"]


async def test_parallel_calls_run_concurrently() -> None:
    turn = calls(("slow", {"tag": "one"}), ("slow", {"tag": "two"}))
    model = ScriptedModel([turn, "both done"])
    started = time.monotonic()
    state = await make_loop(model).start("run both")
    elapsed = time.monotonic() - started

    assert state.status == "succeeded"
    assert 0.2 <= elapsed < 0.4, f"two 0.2 s tools took {elapsed:.2f} s"  # one after the other: 0.4 s or more
    one, two = (c.id for c in turn.tool_calls)
    assert tool_messages(model.conversations[1]) == {one: "slow one done", two: "slow two done"}


@pytest.mark.parametrize(
    ("bad_call", "hint"),
    [
        (tool_call("add", '{"a": 2, "b": '), "not valid JSON"),
        (tool_call("subtract", {"a": 2, "b": 3}), "unknown tool 'subtract'. Available tools: ask_human, add"),
        (tool_call("add", {"a": 2, "b": "three"}), "at b: 'three' is not of type 'integer'"),
        (tool_call("add", {"a": 2}), "'b' is a required property"),
        (tool_call("add", "[2, 3]"), "must be a JSON object"),
    ],
)
async def test_malformed_calls_are_repaired(bad_call: Any, hint: str) -> None:
    model = ScriptedModel([calls(bad_call), call("add", a=2, b=3), "5"])
    recorder = Recorder()
    state = await make_loop(model, on_step=recorder).start("2 + 3")

    assert (state.status, state.answer, state.repairs) == ("succeeded", "5", 0)
    feedback = tool_messages(model.conversations[1])[bad_call.id]
    assert feedback.startswith("Error:")
    assert hint in feedback
    assert recorder.steps[1].content["malformed"] is True
    assert recorder.steps[1].content["ok"] is False


async def test_repair_budget_exhausted_fails_the_run() -> None:
    bad = [calls(tool_call("add", "{oops")) for _ in range(3)]
    model = ScriptedModel(bad)
    recorder = Recorder()
    state = await make_loop(model, max_repairs=2, on_step=recorder).start("2 + 3")

    assert state.status == "failed"
    assert state.error is not None
    assert state.error["type"] == "repair_budget_exceeded"
    assert "3 turns in a row (max_repairs=2)" in state.error["message"]
    assert model.calls_made == 3
    assert recorder.kinds[-1] == "error"


async def test_repair_counter_counts_consecutive_turns_only() -> None:
    model = ScriptedModel(
        [
            calls(tool_call("add", "{oops")),
            call("add", a=1, b=1),
            calls(tool_call("nope", {})),
            call("add", a=2, b=2),
            "done",
        ]
    )
    state = await make_loop(model, max_repairs=1).start("go")
    assert (state.status, state.answer) == ("succeeded", "done")


async def test_max_steps_fails_with_a_clear_error() -> None:
    model = ScriptedModel.from_function(lambda messages: call("add", a=1, b=1))
    state = await make_loop(model, max_steps=3).start("loop forever")

    assert state.status == "failed"
    assert state.error == {
        "type": "max_steps_exceeded",
        "message": "no final answer after 3 model turns (max_steps=3)",
        "max_steps": 3,
    }
    assert model.calls_made == 3


async def test_tool_exceptions_go_back_to_the_model() -> None:
    first = call("broken")
    model = ScriptedModel([first, "the tool failed"])
    state = await make_loop(model).start("try it")
    assert state.status == "succeeded"
    assert tool_messages(model.last_messages)[first.tool_calls[0].id] == "Error: ValueError: the disk is full"


async def test_llm_errors_fail_the_run() -> None:
    def unavailable(messages: list[dict[str, Any]]) -> AssistantTurn:
        raise LLMError("HTTP 503 from the endpoint", status_code=503, retryable=True)

    state = await make_loop(ScriptedModel([unavailable])).start("hello")
    assert state.status == "failed"
    assert state.error == {
        "type": "llm_error",
        "message": "HTTP 503 from the endpoint",
        "status_code": 503,
        "retryable": True,
    }


async def test_ask_human_pauses_and_resume_continues() -> None:
    questions: list[tuple[str, str | None]] = []
    turn = calls(
        ("ask_human", {"question": "Which colour?", "context": "for the logo"}), ("add", {"a": 1, "b": 2})
    )
    ask_id, add_id = (c.id for c in turn.tool_calls)
    model = ScriptedModel([turn, "The logo will be blue."])
    recorder = Recorder()
    loop = make_loop(model, tools=make_tools(questions), on_step=recorder)

    paused = await loop.start("design a logo")
    assert paused.status == "waiting_human"
    assert questions == [("Which colour?", "for the logo")]
    assert [(p.id, p.name, p.request_id, p.question) for p in paused.pending] == [
        (ask_id, "ask_human", "hr_1", "Which colour?")
    ]
    assert tool_messages(paused.messages) == {add_id: "3"}  # the other call of the turn finished
    assert model.calls_made == 1

    text = paused.to_json()
    restored = RunState.from_json(text)
    assert restored == paused
    assert restored.to_json() == text

    recorder_after = Recorder()
    loop_after = make_loop(model, tools=make_tools(), on_step=recorder_after)  # a fresh process, in effect
    done = await loop_after.resume(restored, "blue")
    assert (done.status, done.answer, done.pending) == ("succeeded", "The logo will be blue.", [])
    assert tool_messages(model.last_messages) == {add_id: "3", ask_id: "blue"}
    assert restored.status == "waiting_human"  # resume works on a copy

    assert recorder.kinds == ["model", "human", "tool"]
    assert recorder.steps[1].content["request_id"] == "hr_1"
    assert recorder_after.kinds == ["human", "model", "final"]
    assert [s.index for s in recorder.steps + recorder_after.steps] == list(range(6))
    assert recorder_after.steps[0].content == {"call_id": ask_id, "request_id": "hr_1", "answer": "blue"}


async def test_two_questions_in_one_turn_need_two_answers() -> None:
    turn = calls(("ask_human", {"question": "Name?"}), ("ask_human", {"question": "Age?"}))
    model = ScriptedModel([turn, "Hello Ada, 36"])
    loop = make_loop(model, tools=make_tools([]))
    paused = await loop.start("greet")
    assert [p.request_id for p in paused.waiting_for] == ["hr_1", "hr_2"]

    with pytest.raises(RunNotResumable, match="does not wait for request 'hr_9'"):
        await loop.resume(paused, "x", request_id="hr_9")
    half = await loop.resume(paused, "36", request_id="hr_2")
    assert half.status == "waiting_human"
    assert [p.request_id for p in half.waiting_for] == ["hr_1"]
    assert model.calls_made == 1

    done = await loop.resume(half, "Ada")
    assert done.answer == "Hello Ada, 36"
    assert set(tool_messages(model.last_messages).values()) == {"Ada", "36"}


async def test_resume_refuses_what_it_cannot_continue() -> None:
    loop = make_loop(ScriptedModel([call("ask_human", question="ok?"), "fine"]))
    paused = await loop.start("ask")
    with pytest.raises(RunNotResumable, match="human_answer"):
        await loop.resume(paused)
    finished = await loop.resume(paused, "yes")
    with pytest.raises(RunNotResumable, match="already succeeded") as caught:
        await loop.resume(finished, "again")
    assert caught.value.status == 409
    with pytest.raises(InvalidRunState):
        RunState.from_json('{"version": 99}')


async def test_local_executor_direct_use() -> None:
    tools = LocalToolExecutor(max_output_chars=10)
    tools.add(
        lambda text: text,
        name="echo",
        parameters={"type": "object", "properties": {"text": {"type": "string"}}},
    )
    long = await tools.call("echo", {"text": "x" * 25})
    assert long.ok
    assert long.content == "x" * 10 + "\n[... output truncated: 15 more characters]"
    unknown = await tools.call("nope", {})
    assert (unknown.ok, unknown.content) == (False, "Error: unknown tool 'nope'. Available tools: echo.")
    invalid = await tools.call("echo", {"text": 3})
    assert not invalid.ok
    assert "3 is not of type 'string'" in invalid.content
    assert tools.tool_schemas()[0]["function"]["name"] == "echo"
    with pytest.raises(InvalidToolSchema, match="invalid JSON Schema"):
        tools.add(add, parameters={"type": "object", "properties": {"a": {"type": "integr"}}})
    with pytest.raises(InvalidToolSchema, match="needs a JSON Schema"):
        tools.add(add)


def test_errors_and_state_pickle() -> None:
    error = LLMError("boom", status_code=429, retryable=True)
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.status_code, copy.retryable, copy.message) == (LLMError, 429, True, "boom")
    state = RunState(config={"strategy": "function_calling"}, messages=[{"role": "user", "content": "hi"}])
    assert pickle.loads(pickle.dumps(state)) == state
