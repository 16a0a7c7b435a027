"""Routers, the SOP, the task center, placement and the two offline examples: in process, no Ray."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Sequence
from typing import Any

import pytest

from agent_core import ScriptedModel
from agent_core.environment import (
    AgentFailed,
    AgentInfo,
    EchoAgent,
    EnvironmentAgent,
    Hub,
    LoopAgent,
    Message,
    NoLivingNode,
    OfflineRuntime,
    Placement,
    ProcessRuntime,
    SOPRouter,
    TaskCenter,
    build_agent,
    choose_node,
    linear_sop,
    make_router,
)
from agent_core.environment.examples import (
    CHAT_ROOM_TRANSCRIPT,
    PIPELINE_TRANSCRIPT,
    chat_room_agents,
    pipeline_agents,
    run_chat_room,
    run_pipeline,
    transcript_lines,
)
from agent_core.tools import LocalTool
from foundation.errors import ValidationFailed

_ADD_SCHEMA = {
    "type": "object",
    "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
    "required": ["a", "b"],
}


def _add(a: float, b: float) -> float:
    return a + b


_counter = iter(range(1_000_000))


def hub() -> Hub:
    return Hub("team-a", f"env{next(_counter)}")


async def center_with(agents: Sequence[EnvironmentAgent], router: Any) -> TaskCenter:
    center = TaskCenter(hub(), agents, router)
    await center.start()
    return center


def lines(messages: Sequence[Message]) -> list[tuple[str, tuple[str, ...], str]]:
    return transcript_lines(messages)


class Scripted(EnvironmentAgent):
    """Answers each act with the next scripted text (or nothing once the script is used up)."""

    def __init__(self, name: str, *texts: str, role: str = "worker") -> None:
        self.name, self.role = name, role
        self.texts = list(texts)
        self.inboxes: list[list[str]] = []

    async def act(self, inbox: list[Message]) -> list[Message]:
        self.inboxes.append([m.content for m in inbox])
        return [Message(self.name, self.texts.pop(0))] if self.texts else []


class ToB(EchoAgent):
    async def act(self, inbox: list[Message]) -> list[Message]:
        return [Message(self.name, f"re: {m.content}", ("b",)) for m in inbox]


class Flaky(EchoAgent):
    def __init__(self, name: str) -> None:
        super().__init__(name, max_replies=1)
        self.broken = True

    async def act(self, inbox: list[Message]) -> list[Message]:
        if self.broken:
            raise RuntimeError("the model endpoint is down")
        return await super().act(inbox)


class TestRouters:
    async def test_send_to_delivers_to_named_recipients_and_followers(self) -> None:
        a, b, c = Scripted("a"), Scripted("b"), Scripted("c")
        center = await center_with([a, b, c], {"kind": "send_to", "follows": {"c": ["a"]}})
        assert (await center.post("for b", recipients=["b"])).delivered_to == ("b",)
        assert (await center.post("from a", sender="a")).delivered_to == ("c",)  # c follows a
        assert (await center.post("from b", sender="b")).delivered_to == ()  # nobody follows b
        await center.hub.subscribe("general", agent="a")
        assert (await center.post("from b again", sender="b")).delivered_to == ("a",)  # subscriptions

    async def test_broadcast_skips_the_sender(self) -> None:
        agents = [EchoAgent(n, max_replies=1) for n in ("a", "b", "c")]
        center = await center_with(agents, "broadcast")
        assert (await center.post("hello", sender="a")).delivered_to == ("b", "c")
        step = await center.step()
        assert step.acted == ("b", "c")
        assert [m.delivered_to for m in step.published] == [("a", "c"), ("a", "b")]

    async def test_round_robin_passes_the_turn_in_a_fixed_order(self) -> None:
        agents = [EchoAgent(n, max_replies=2, prefix=f"{n}>") for n in ("a", "b", "c")]
        center = await center_with(agents, {"kind": "round_robin", "order": ["b", "c", "a"]})
        await center.post("go")
        results = await center.run(max_steps=20)
        transcript = await center.transcript()
        assert [(m.sender, m.delivered_to) for m in transcript] == [
            ("user", ("b",)),
            ("b", ("c",)),
            ("c", ("a",)),
            ("a", ("b",)),
            ("b", ("c",)),
            ("c", ("a",)),
            ("a", ("b",)),
        ]
        assert transcript[-1].content == "a>c>b>a>c>b>go"
        assert [r.acted for r in results] == [("b",), ("c",), ("a",), ("b",), ("c",), ("a",), ("b",), ()]
        assert results[6].published == ()  # b used up its two replies: the ring stops
        assert await center.hub.pending() == {}

    async def test_custom_router_is_a_function(self) -> None:
        seen: list[list[str]] = []

        def to_reviewers(message: Message, agents: Sequence[AgentInfo]) -> list[str]:
            seen.append([a.name for a in agents])
            return [a.name for a in agents if a.role == "reviewer" and a.name != message.sender]

        agents = [
            Scripted("w", role="writer"),
            Scripted("r1", role="reviewer"),
            Scripted("r2", role="reviewer"),
        ]
        center = await center_with(agents, to_reviewers)
        assert (await center.post("draft", sender="w")).delivered_to == ("r1", "r2")
        assert seen == [["w", "r1", "r2"]]

    async def test_a_custom_router_must_name_known_agents(self) -> None:
        center = await center_with([Scripted("a")], lambda message, agents: ["ghost"])
        with pytest.raises(ValidationFailed):
            await center.post("hi")
        center = await center_with([Scripted("a")], lambda message, agents: "a")
        with pytest.raises(ValidationFailed):
            await center.post("hi")

    def test_router_specs_are_checked(self) -> None:
        with pytest.raises(ValidationFailed) as caught:
            make_router({"kind": "telepathy"})
        assert caught.value.field == "router.kind"
        with pytest.raises(ValidationFailed) as caught:
            make_router({"kind": "round_robin", "order": []})
        assert caught.value.field == "router.order"
        with pytest.raises(ValidationFailed) as caught:
            make_router({"kind": "broadcast", "loud": True})
        assert caught.value.field == "router"

    async def test_the_roster_is_checked_when_the_center_starts(self) -> None:
        center = TaskCenter(hub(), [Scripted("a")], {"kind": "round_robin", "order": ["a", "b"]})
        with pytest.raises(ValidationFailed) as caught:
            await center.start()
        assert caught.value.field == "router.order"


REVIEW_SOP = {
    "kind": "sop",
    "start": "draft",
    "states": {
        "draft": {"agent": "writer", "transitions": [{"to": "review"}]},
        "review": {
            "agent": "reviewer",
            "transitions": [
                {"when": {"contains": "approved"}, "to": "done"},
                {"when": {"regex": r"(?i)changes?\s+needed"}, "to": "draft"},
            ],
        },
        "done": {"terminal": True},
    },
}


class TestSOP:
    async def test_branch_back_then_terminal(self) -> None:
        writer = Scripted("writer", "draft 1", "draft 2", "draft 3", role="writer")
        reviewer = Scripted("reviewer", "Changes needed: add tests", "hmm", "APPROVED", role="reviewer")
        center = await center_with([writer, reviewer], REVIEW_SOP)
        await center.post("write the release notes")
        results = await center.run(max_steps=20)
        assert lines(await center.transcript()) == [
            ("user", ("writer",), "write the release notes"),
            ("writer", ("reviewer",), "draft 1"),
            ("reviewer", ("writer",), "Changes needed: add tests"),  # the branch back
            ("writer", ("reviewer",), "draft 2"),
            ("reviewer", ("reviewer",), "hmm"),  # no transition matched: the reviewer again
            ("reviewer", (), "APPROVED"),  # terminal: nobody
        ]
        assert writer.inboxes == [["write the release notes"], ["Changes needed: add tests"]]
        assert reviewer.inboxes == [["draft 1"], ["draft 2"], ["hmm"]]
        sop = center.router
        assert isinstance(sop, SOPRouter) and sop.finished
        assert sop.path == ["draft", "review", "draft", "review", "done"]
        assert results[-1].finished and center.describe()["router"]["state"] == "done"
        assert (await center.step()).acted == ()  # a finished SOP acts no more

    async def test_metadata_condition_and_outsiders(self) -> None:
        spec = {
            "kind": "sop",
            "start": "triage",
            "states": {
                "triage": {
                    "agent": "bot",
                    "transitions": [{"when": {"metadata": {"severity": "high"}}, "to": "page"}],
                },
                "page": {"agent": "oncall", "transitions": [{"to": "closed"}]},
                "closed": {"terminal": True},
            },
        }
        center = await center_with([Scripted("bot"), Scripted("oncall")], spec)
        assert (await center.post("disk full")).delivered_to == ("bot",)
        low = await center.post(Message("bot", "meh", metadata={"severity": "low"}))
        assert low.delivered_to == ("bot",)
        assert (await center.post(Message("bot", "!", metadata={"severity": "high"}))).delivered_to == (
            "oncall",
        )
        assert (await center.post("status?", sender="user")).delivered_to == ("oncall",)  # to whoever acts

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"start": "nowhere"}, "router.start"),
            ({"start": "done"}, "router.start"),
            ({"states": {}}, "router.states"),
            ({"colour": 1}, "router"),
            ({"states": {"a": {"agent": "x", "transitions": [{"to": "zz"}]}}}, "router.start"),
        ],
    )
    def test_bad_specs_name_the_field(self, change: dict, field: str) -> None:
        with pytest.raises(ValidationFailed) as caught:
            make_router({**REVIEW_SOP, **change})
        assert caught.value.field == field

    @pytest.mark.parametrize(
        ("state", "field"),
        [
            ({"agent": "writer", "transitions": [{"to": "zz"}]}, "router.states.draft.transitions[0].to"),
            ({"agent": "writer", "transitions": []}, "router.states.draft.transitions"),
            ({"agent": "writer", "transitions": [{"to": "review", "when": {"regex": "("}}]}, None),
            ({"agent": "writer", "transitions": [{"to": "review", "when": {"smells": "x"}}]}, None),
            ({"transitions": [{"to": "review"}]}, "router.states.draft.agent"),
        ],
    )
    def test_bad_states_name_the_field(self, state: dict, field: str | None) -> None:
        spec = {**REVIEW_SOP, "states": {**REVIEW_SOP["states"], "draft": state}}
        with pytest.raises(ValidationFailed) as caught:
            make_router(spec)
        assert caught.value.field == (field or caught.value.field)
        assert str(caught.value.field).startswith("router.states.draft")

    def test_linear_sop(self) -> None:
        router = make_router(linear_sop(["a", "b"]))
        assert isinstance(router, SOPRouter)
        assert router.start == "step1_a" and router.states["done"].terminal


class TestTaskCenter:
    async def test_a_failing_agent_gets_its_messages_back_and_the_failed_status(self) -> None:
        flaky = Flaky("flaky")
        center = await center_with([flaky, Scripted("boss")], "send_to")
        await center.post("do it", recipients=["flaky"])
        step = await center.step()
        assert step.acted == ("flaky",) and step.failed["flaky"]["type"] == "agent_failed"
        assert "the model endpoint is down" in step.failed["flaky"]["message"]
        info = await center.hub.agent("flaky")
        assert info.status == "failed" and "endpoint is down" in (info.error or "")
        assert await center.hub.pending() == {"flaky": 1}
        assert (await center.step()).acted == ()  # a failed agent does not act
        flaky.broken = False
        await center.hub.set_status("flaky", "idle")  # what a restart does
        step = await center.step()
        assert [m.content for m in step.published] == ["do it"] and not step.failed

    async def test_replies_wait_in_the_outbox_when_an_inbox_is_full(self) -> None:
        tight = Hub("team-a", "tight", inbox_limit=1)
        await tight.register_agent("b", "human")  # read from outside (HTTP), never acts here
        center = TaskCenter(tight, [ToB("a")], "send_to")
        await center.start()
        await center.post("block", recipients=["b"])
        await center.post("ping", recipients=["a"])
        step = await center.step()
        assert step.acted == ("a",) and step.published == () and step.waiting == 1
        assert [m.content for m in await tight.read("b")] == ["block"]
        step = await center.step()
        assert [m.content for m in step.published] == ["re: ping"] and step.waiting == 0
        assert [m.content for m in await tight.read("b")] == ["re: ping"]

    async def test_an_agent_that_does_not_answer_in_time_fails(self) -> None:
        class Stuck(EnvironmentAgent):
            name, role = "stuck", "worker"

            async def act(self, inbox: list[Message]) -> list[Message]:
                await asyncio.sleep(3600)
                return []

        center = TaskCenter(hub(), [Stuck()], "send_to", act_timeout_s=0.05)
        await center.start()
        await center.post("hello?", recipients=["stuck"])
        step = await center.step()
        assert "no answer within 0.05 s" in step.failed["stuck"]["message"]
        assert await center.hub.pending() == {"stuck": 1}

    async def test_the_sender_of_a_reply_is_the_agent(self) -> None:
        class Impostor(EnvironmentAgent):
            name, role = "mallory", "worker"

            async def act(self, inbox: list[Message]) -> list[Message]:
                return [Message("boss", "I am the boss", ("alice",))]

        center = await center_with([Impostor(), Scripted("alice")], "send_to")
        await center.post("hi", recipients=["mallory"])
        step = await center.step()
        assert step.published[0].sender == "mallory"

    async def test_an_act_that_returns_garbage_is_a_failure(self) -> None:
        class Garbage(EnvironmentAgent):
            name, role = "g", "worker"

            async def act(self, inbox: list[Message]) -> list[Message]:
                return ["not a message"]  # type: ignore[list-item]

        center = await center_with([Garbage()], "send_to")
        await center.post("hi", recipients=["g"])
        assert "list of Message" in (await center.step()).failed["g"]["message"]


class TestAgents:
    async def test_loop_agent_answers_its_inbox(self) -> None:
        model = ScriptedModel(["the answer"])
        agent = LoopAgent("sage", "advisor", model, system_prompt="Be brief.")
        question = Message("user", "what is 6 x 7?", topic="math")
        [answer] = await agent.act([question])
        assert (answer.sender, answer.content, answer.topic) == ("sage", "the answer", "math")
        assert answer.metadata == {"in_reply_to": question.id}
        assert model.last_messages[0] == {"role": "system", "content": "Be brief."}
        assert model.last_messages[1]["content"] == "From user:\nwhat is 6 x 7?"
        assert agent.config() == {}  # a model object is not JSON: this agent cannot move

    async def test_loop_agent_failure_is_reported(self) -> None:
        llm = {"provider": "scripted", "replies": ["the only answer"]}
        agent = build_agent({"kind": "loop", "name": "x", "role": "r", "max_steps": 1, "llm": llm})
        [answer] = await agent.act([Message("user", "hi")])
        assert answer.content == "the only answer"
        with pytest.raises(Exception, match="ran out of replies"):  # the script goes on across acts
            await agent.act([Message("user", "again")])
        assert isinstance(AgentFailed("x", "why"), AgentFailed)

    async def test_the_runtime_makes_the_llm_and_the_tools(self) -> None:
        add = LocalTool("add", _add, _ADD_SCHEMA, "Add two numbers.")
        runtime = pickle.loads(pickle.dumps(OfflineRuntime((add,))))  # Ray ships it to the agent's node
        script = [{"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}, "five"]
        config = {
            "kind": "loop",
            "name": "calc",
            "role": "r",
            "llm": {"provider": "scripted", "replies": script},
        }
        agent = build_agent(config, runtime)
        assert isinstance(agent, LoopAgent) and agent.tools.tool_schemas()[0]["function"]["name"] == "add"
        [answer] = await agent.act([Message("user", "2 + 3?")])
        assert answer.content == "five"
        last = agent.llm.conversations[-1][-1]  # type: ignore[attr-defined]
        assert (last["role"], last["content"]) == ("tool", "5")
        assert build_agent(config).tools.tool_schemas() == []  # type: ignore[attr-defined]  # OFFLINE: no tools
        endpoint = {**config, "llm": {"base_url": "http://127.0.0.1:9/v1", "model": "m"}}
        with pytest.raises(ValidationFailed, match="scripted models only"):
            build_agent(endpoint)
        assert isinstance(build_agent(endpoint, ProcessRuntime()), LoopAgent)
        for key in ("api_key", "api_key_secret"):  # a stored, shown config holds no secret
            with pytest.raises(ValidationFailed) as refused:
                build_agent({**endpoint, "llm": {**endpoint["llm"], key: "sk-x"}}, ProcessRuntime())
            assert refused.value.field == f"config.llm.{key}"

    def test_configs_round_trip(self) -> None:
        for config in [*chat_room_agents(), {"kind": "echo", "name": "e", "role": "r", "prefix": ">"}]:
            agent = build_agent(config)
            again = build_agent(agent.config())
            assert (again.name, again.role, again.config()) == (agent.name, agent.role, agent.config())

    @pytest.mark.parametrize(
        ("config", "field"),
        [
            ({"kind": "wizard", "name": "a", "role": "r"}, "config.kind"),
            ({"kind": "echo", "name": "a b", "role": "r"}, "config.name"),
            ({"kind": "loop", "name": "a", "role": "r"}, "config.llm"),
            ({"kind": "loop", "name": "a", "role": "r", "llm": {"scripted": [1]}}, "config.llm.scripted"),
            ({"kind": "loop", "name": "a", "role": "r", "llm": {"scripted": []}}, "config.llm.scripted"),
            (
                {"kind": "loop", "name": "a", "role": "r", "llm": {"provider": "scripted", "replies": [1]}},
                "config.llm.replies",
            ),
            (
                {"kind": "loop", "name": "a", "role": "r", "llm": {"model": "m", "modle": "m"}},
                "config.llm.modle",
            ),
            ({"kind": "loop", "name": "a", "role": "r", "llm": {"api_key": "s"}}, "config.llm.api_key"),
        ],
    )
    def test_bad_configs(self, config: dict, field: str) -> None:
        with pytest.raises(ValidationFailed) as caught:
            build_agent(config)
        assert caught.value.field == field


class TestPlacement:
    def test_spread_pack_and_pinned(self) -> None:
        alive = ["head", "a", "b"]
        spread = Placement.parse("spread")
        load: dict[str, int] = {}
        chosen = []
        for _ in range(4):
            node = choose_node(spread, alive, load)
            chosen.append(node)
            load[node] = load.get(node, 0) + 1
        assert chosen == ["head", "a", "b", "head"]
        assert choose_node(Placement.parse("pack"), alive, {}, home="b") == "b"
        assert choose_node(Placement.parse("pack"), alive, {"a": 2, "b": 1}, home="b") == "a"
        assert choose_node(Placement.parse("node:a"), alive, {}) == "a"
        assert choose_node(spread, alive, {}, exclude={"head"}) == "a"

    def test_no_living_node(self) -> None:
        with pytest.raises(NoLivingNode):
            choose_node(Placement.parse("node:gone"), ["a"], {})
        with pytest.raises(NoLivingNode):
            choose_node(Placement(), ["a"], {}, exclude={"a"})
        for bad in ("everywhere", "node:"):
            with pytest.raises(ValidationFailed):
                Placement.parse(bad)


class TestExamples:
    async def test_chat_room_with_a_moderator(self) -> None:
        assert lines(await run_chat_room()) == CHAT_ROOM_TRANSCRIPT

    async def test_pipeline_passes_each_output_on_as_the_next_task(self) -> None:
        agents = {c["name"]: build_agent(c) for c in pipeline_agents()}
        assert lines(await run_pipeline(agents=agents)) == PIPELINE_TRANSCRIPT
        coder = agents["coder"]
        assert isinstance(coder, LoopAgent) and isinstance(coder.llm, ScriptedModel)
        planner_output = PIPELINE_TRANSCRIPT[1][2]
        assert coder.llm.last_messages[1]["content"] == f"From planner:\n{planner_output}"
