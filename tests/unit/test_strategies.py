"""Plan-and-execute and reflection over a scripted model and local tools."""

from __future__ import annotations

from typing import Any

import pytest

from agent_core import (
    AgentLoop,
    InMemoryCritiqueMemory,
    LocalToolExecutor,
    LoopSettings,
    PlanAndExecute,
    Reflection,
    RunState,
    ScriptedModel,
    Step,
    UnknownStrategy,
    ask_human_tool,
    build_strategy,
    call,
)
from agent_core.llm import Reply
from agent_core.strategies import extract_json
from agent_core.strategies.plan_execute import parse_plan
from agent_core.strategies.reflection import parse_verdict

SYSTEM = "You are a careful calculator."
NUMBERS = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
}


def make_tools() -> LocalToolExecutor:
    tools = LocalToolExecutor([ask_human_tool(lambda question, context: "hr_1")])
    tools.add(lambda a, b: a + b, name="add", parameters=NUMBERS, description="Add two integers.")
    return tools


class Recorder:
    def __init__(self) -> None:
        self.steps: list[Step] = []

    async def __call__(self, step: Step) -> None:
        self.steps.append(step)

    def kinds(self) -> list[str]:
        return [s.kind for s in self.steps]


def system_of(conversation: list[dict[str, Any]]) -> str:
    return str(conversation[0]["content"])


def last_user(conversation: list[dict[str, Any]]) -> str:
    return next(str(m["content"]) for m in reversed(conversation) if m["role"] == "user")


async def test_plan_execute_runs_subtasks_and_revises_the_plan() -> None:
    model = ScriptedModel(
        [
            '```json\n["compute 2+3", "double it", "say goodbye"]\n```',
            call("add", a=2, b=3),
            "5",
            'Revised: {"plan": ["double 5"]}',  # the revision replaces the rest of the plan
            call("add", a=5, b=5),
            "10",
            "[]",
            "The answer is 10.",
        ]
    )
    recorder = Recorder()
    strategy = PlanAndExecute(model, make_tools(), LoopSettings(system_prompt=SYSTEM, on_step=recorder))
    state = await strategy.start("double the sum of 2 and 3")

    assert (state.status, state.answer) == ("succeeded", "The answer is 10.")
    assert model.remaining == 0
    assert state.strategy["plan"] == []
    assert state.strategy["done"] == [
        {"subtask": "compute 2+3", "ok": True, "result": "5"},
        {"subtask": "double 5", "ok": True, "result": "10"},
    ]
    plans = [s.content["plan"] for s in recorder.steps if s.kind == "plan"]
    assert plans == [["compute 2+3", "double it", "say goodbye"], ["double 5"], []]

    planner = model.conversations[0]
    assert "add" in system_of(planner)
    assert SYSTEM in system_of(planner)
    assert system_of(model.conversations[1]) == SYSTEM  # the inner loop runs under the agent's prompt
    second_subtask = last_user(model.conversations[4])
    assert "Your current subtask: double 5" in second_subtask
    assert "- compute 2+3: 5" in second_subtask
    revise = last_user(model.conversations[3])
    assert 'Subtask 1 ("compute 2+3") succeeded' in revise
    assert '["double it", "say goodbye"]' in revise
    assert "2. double 5 -> ok: 10" in last_user(model.conversations[7])

    assert [s.index for s in recorder.steps] == list(range(len(recorder.steps)))
    assert recorder.kinds()[:6] == ["model", "plan", "model", "tool", "model", "final"]
    assert recorder.steps[2].content["subtask"] == 1
    assert recorder.kinds()[-2:] == ["model", "final"]
    assert "subtask" not in recorder.steps[-1].content


async def test_plan_execute_resumes_from_a_checkpoint_inside_a_subtask() -> None:
    """Checkpoints of an inner run carry the outer progress: resuming one finishes without re-planning."""
    replies: list[Reply] = ['["compute 2+3"]', call("add", a=2, b=3), "5", "[]", "The answer is 5."]
    snapshots: list[dict[str, Any]] = []

    async def keep(state: RunState) -> None:
        snapshots.append(state.to_dict())

    first = ScriptedModel(list(replies))
    await PlanAndExecute(first, make_tools(), LoopSettings(system_prompt=SYSTEM, on_checkpoint=keep)).start(
        "add 2 and 3"
    )
    # The first checkpoint comes after the inner model turn asked for `add` (before the tool ran).
    saved = RunState.from_dict(snapshots[0])
    assert saved.status == "running" and saved.strategy["inner"]["pending"]
    rest = ScriptedModel(replies[2:])  # what a model would be asked after that point
    resumed = await PlanAndExecute(rest, make_tools(), LoopSettings(system_prompt=SYSTEM)).resume(saved)
    assert (resumed.status, resumed.answer) == ("succeeded", "The answer is 5.")
    assert rest.remaining == 0  # neither the plan nor the first inner turn was asked again
    assert resumed.strategy["done"] == [{"subtask": "compute 2+3", "ok": True, "result": "5"}]


async def test_plan_execute_asks_again_on_bad_json_and_gives_up_in_bounds() -> None:
    model = ScriptedModel(["I would start by adding.", '[{"task": "add 1 and 1"}]', "2", "[]", "2"])
    state = await PlanAndExecute(model, make_tools(), LoopSettings(system_prompt=SYSTEM)).start("1 + 1")
    assert (state.status, state.answer) == ("succeeded", "2")
    assert "not usable" in last_user(model.conversations[1])

    stubborn = ScriptedModel(["no", "still no", "[]"])
    failed = await PlanAndExecute(
        stubborn, make_tools(), LoopSettings(system_prompt=SYSTEM), max_plan_retries=2
    ).start("x")
    assert failed.status == "failed"
    assert failed.error is not None
    assert (failed.error["type"], failed.error["message"]) == (
        "planning_failed",
        "no usable plan after 3 replies",
    )


async def test_plan_execute_pauses_for_a_human_and_resumes() -> None:
    ask = call("ask_human", question="Which number?")
    script: list[Reply] = ['["get a number from the user", "add 1"]', ask, "7", '["add 1 to 7"]']
    model = ScriptedModel([*script, call("add", a=7, b=1), "8", "[]", "8"])
    strategy = PlanAndExecute(model, make_tools(), LoopSettings(system_prompt=SYSTEM))
    paused = await strategy.start("add one to the user's number")

    assert paused.status == "waiting_human"
    assert model.calls_made == 2
    assert [p.request_id for p in paused.pending] == ["hr_1"]
    assert paused.strategy["plan"][0] == "get a number from the user"
    assert paused.strategy["inner"]["status"] == "waiting_human"
    restored = RunState.from_json(paused.to_json())
    assert restored == paused

    done = await strategy.resume(restored, "7")
    assert (done.status, done.answer) == ("succeeded", "8")
    assert {"role": "tool", "tool_call_id": ask.tool_calls[0].id, "content": "7"} in model.conversations[2]
    assert done.strategy["done"] == [
        {"subtask": "get a number from the user", "ok": True, "result": "7"},
        {"subtask": "add 1 to 7", "ok": True, "result": "8"},
    ]
    assert done.strategy["inner"] is None


async def test_reflection_stores_a_critique_and_the_next_attempt_sees_it() -> None:
    critique = "Use the add tool instead of guessing."
    model = ScriptedModel(
        [
            "7",
            '{"success": false, "reason": "2 + 3 is not 7"}',
            critique,
            call("add", a=2, b=3),
            "5",
            '{"success": true, "reason": "correct"}',
        ]
    )
    memory = InMemoryCritiqueMemory()
    recorder = Recorder()
    strategy = Reflection(
        model, make_tools(), LoopSettings(system_prompt=SYSTEM, on_step=recorder), memory=memory
    )
    state = await strategy.start("What is 2 + 3?")

    assert (state.status, state.answer) == ("succeeded", "5")
    assert await memory.recent(5) == [critique]
    assert system_of(model.conversations[0]) == SYSTEM
    assert critique in system_of(model.conversations[3])
    assert "2 + 3 is not 7" in last_user(model.conversations[2])
    critiques = [s.content for s in recorder.steps if s.kind == "critique"]
    assert critiques == [
        {"attempt": 1, "success": False, "reason": "2 + 3 is not 7"},
        {"attempt": 1, "reason": "2 + 3 is not 7", "critique": critique},
        {"attempt": 2, "success": True, "reason": "correct"},
    ]
    assert state.strategy["attempt"] == 2
    assert [s.index for s in recorder.steps] == list(range(len(recorder.steps)))


async def test_reflection_critiques_failed_runs_and_stops_after_max_attempts() -> None:
    loops = call("add", a=1, b=1)
    model = ScriptedModel([loops, "Stop calling tools forever.", loops, "Answer sooner."])
    memory = InMemoryCritiqueMemory()
    strategy = Reflection(
        model, make_tools(), LoopSettings(system_prompt=SYSTEM, max_steps=1), memory=memory, max_attempts=2
    )
    state = await strategy.start("1 + 1")

    assert state.status == "failed"
    assert state.error is not None
    assert state.error["type"] == "attempts_exhausted"
    assert "no final answer after 1 model turns" in last_user(model.conversations[1])
    assert await memory.recent(5) == ["Stop calling tools forever.", "Answer sooner."]


async def test_reflection_pauses_for_a_human_and_resumes() -> None:
    model = ScriptedModel([call("ask_human", question="Which?"), "blue", '{"success": true}'])
    strategy = Reflection(model, make_tools(), LoopSettings(system_prompt=SYSTEM))
    paused = await strategy.start("pick a colour")
    assert paused.status == "waiting_human"
    assert paused.strategy["attempt"] == 1
    done = await strategy.resume(RunState.from_json(paused.to_json()), "blue please")
    assert (done.status, done.answer) == ("succeeded", "blue")


async def test_build_strategy() -> None:
    model, tools = ScriptedModel(["hi"]), make_tools()
    loop = build_strategy("function_calling", model, tools, LoopSettings(system_prompt=SYSTEM))
    assert isinstance(loop, AgentLoop)
    reflection = build_strategy(
        "reflection", model, tools, LoopSettings(system_prompt=SYSTEM), max_attempts=5
    )
    assert isinstance(reflection, Reflection)
    assert reflection.config()["max_attempts"] == 5
    planner = build_strategy("plan_execute", model, tools, LoopSettings(system_prompt=SYSTEM, max_steps=4))
    assert isinstance(planner, PlanAndExecute)
    assert planner.config()["strategy"] == "plan_execute"
    with pytest.raises(UnknownStrategy, match="unknown strategy 'tree_of_thought'"):
        build_strategy("tree_of_thought", model, tools, LoopSettings(system_prompt=SYSTEM))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "plan"),
    [
        ('["a", "b"]', ["a", "b"]),
        ('Here it is:\n```json\n[{"description": "a"}, {"step": "b"}]\n```', ["a", "b"]),
        ('{"subtasks": [" a "]}', ["a"]),
        ("Plan: [] because it is done", []),
    ],
)
def test_parse_plan(text: str, plan: list[str]) -> None:
    assert parse_plan(text) == plan


@pytest.mark.parametrize("text", ["no plan", '{"thoughts": "x"}', "[1, 2]", '[""]'])
def test_parse_plan_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_plan(text)


def test_parse_verdict_and_extract_json() -> None:
    assert parse_verdict('{"success": false, "reason": "off by one"}') == (False, "off by one")
    assert parse_verdict("Yes. It is right.") == (True, "Yes. It is right.")
    assert parse_verdict("No, wrong.") == (False, "No, wrong.")
    assert parse_verdict("hmm") is None
    assert extract_json('noise {"a": [1]} noise') == {"a": [1]}
