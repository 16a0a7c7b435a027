"""Agent runs through the HTTP app in-process: scripted model, fake sandbox, a real SQLite registry."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from registry import Database, KeyStore
from sandbox.base import ShellResult
from sandbox.config import SandboxConfig
from sandbox.fake import FakeBackend, FakeSandbox
from sandbox.manager import SandboxManager
from toolserver.config import Settings
from toolserver.http.app import build_services, create_app
from toolserver.nodes.local import LocalNodes


def _shell(command: str) -> ShellResult:
    return ShellResult(
        exit_code=0, output=f"ran: {command}", timed_out=False, truncated=False, cwd="/workspace"
    )


@pytest.fixture
async def env(tmp_path):
    settings = Settings(home=tmp_path, pool_size=0)
    db = Database(settings.database)
    backend = FakeBackend("node-a", sandbox_factory=lambda info: FakeSandbox(info, shell=_shell))
    manager = SandboxManager(SandboxConfig(pool_size=0, node_id="node-a"), backend=backend)
    services = build_services(settings, db, LocalNodes({"node-a": manager}))
    _, key_a = KeyStore(db).create("team-a", "a")
    _, key_b = KeyStore(db).create("team-b", "b")
    transport = httpx.ASGITransport(app=create_app(services))
    a = httpx.AsyncClient(
        transport=transport, base_url="http://t", headers={"Authorization": f"Bearer {key_a}"}
    )
    b = httpx.AsyncClient(
        transport=transport, base_url="http://t", headers={"Authorization": f"Bearer {key_b}"}
    )
    yield a, b, services.agents.scheduler, backend
    await services.agents.scheduler.idle()
    await a.aclose()
    await b.aclose()
    await manager.shutdown()
    db.close()


def _agent(name: str, replies: list, **extra) -> dict:
    return {
        "name": name,
        "system_prompt": "You are a careful operator.",
        "tools": ["shell"],
        "llm": {"provider": "scripted", "replies": replies},
        **extra,
    }


ASKING = [
    {"tool_calls": [{"name": "shell", "arguments": {"command": "ls /workspace"}}]},
    {
        "tool_calls": [
            {"name": "ask_human", "arguments": {"question": "Deploy to production?", "context": "tests pass"}}
        ]
    },
    "Deployed after approval.",
]


async def _wait_status(client: httpx.AsyncClient, run_id: str, status: str, scheduler) -> dict:
    """Poll the run until it has `status`; the deadline is generous so a loaded machine does not fail it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        await scheduler.idle()
        run = (await client.get(f"/v1/runs/{run_id}")).json()
        if run["status"] == status or loop.time() > deadline:
            break
        await asyncio.sleep(0.02)
    assert run["status"] == status, f"run stayed {run['status']}, wanted {status}"
    return run


async def test_run_pauses_for_a_human_and_resumes_with_the_answer(env):
    a, b, scheduler, backend = env
    assert (await a.post("/v1/agents", json=_agent("ops", ASKING))).status_code == 201
    session = (await a.post("/v1/sessions", json={})).json()["id"]
    started = await a.post("/v1/runs", json={"agent": "ops", "task": "ship it", "session_id": session})
    assert started.status_code == 201
    run_id = started.json()["id"]
    run = await _wait_status(a, run_id, "waiting_human", scheduler)
    assert not scheduler._tasks  # nothing runs while it waits for the human
    assert ("shell", "ls /workspace") in backend.sandboxes[session].calls
    pending = (await a.get("/v1/human-requests", params={"status": "pending"})).json()["requests"]
    assert [p["question"] for p in pending] == ["Deploy to production?"]
    assert pending[0]["run_id"] == run_id and pending[0]["context"]["context"] == "tests pass"
    # another tenant sees nothing and cannot answer
    assert (await b.get("/v1/human-requests")).json()["requests"] == []
    assert (
        await b.post(f"/v1/human-requests/{pending[0]['id']}/answer", json={"answer": "no"})
    ).status_code == 404
    assert (await b.get(f"/v1/runs/{run_id}")).status_code == 404
    answered = await a.post(f"/v1/human-requests/{pending[0]['id']}/answer", json={"answer": "yes, go"})
    assert answered.status_code == 200 and answered.json()["status"] == "answered"
    again = await a.post(f"/v1/human-requests/{pending[0]['id']}/answer", json={"answer": "twice"})
    assert again.status_code == 409
    run = await _wait_status(a, run_id, "succeeded", scheduler)
    assert run["result"] == "Deployed after approval."
    kinds = [s["kind"] for s in run["steps"]]
    assert "human" in kinds and kinds[-1] == "final"
    answers = [
        s["content"]["answer"] for s in run["steps"] if s["kind"] == "human" and "answer" in s["content"]
    ]
    assert answers == ["yes, go"]


async def test_events_stream_steps_and_end(env):
    a, _, _, _ = env
    await a.post(
        "/v1/agents",
        json=_agent("quick", [{"tool_calls": [{"name": "shell", "arguments": {"command": "true"}}]}, "done"]),
    )
    run_id = (await a.post("/v1/runs", json={"agent": "quick", "task": "go"})).json()["id"]
    events = []
    async with a.stream("GET", f"/v1/runs/{run_id}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                events.append(line.removeprefix("event: "))
            if line.startswith("data: ") and events[-1] == "end":
                assert json.loads(line.removeprefix("data: "))["status"] == "succeeded"
                break
    assert events.count("step") >= 3 and events[-1] == "end"


async def test_ask_human_called_directly_is_202_and_long_polls(env):
    a, _, _, _ = env
    response = await a.post("/v1/tools/ask_human/call", json={"arguments": {"question": "Which region?"}})
    assert response.status_code == 202
    request_id = response.json()["request_id"]
    poll = asyncio.ensure_future(a.get(f"/v1/human-requests/{request_id}", params={"wait_s": 10}))
    await asyncio.sleep(0.2)
    assert not poll.done()
    await a.post(f"/v1/human-requests/{request_id}/answer", json={"answer": "eu-west"})
    answered = (await asyncio.wait_for(poll, 5)).json()
    assert answered["status"] == "answered" and answered["answer"] == "eu-west"


async def test_nobody_answers_continue_or_fail(env):
    a, _, scheduler, _ = env
    ask = [{"tool_calls": [{"name": "ask_human", "arguments": {"question": "anyone?"}}]}, "went ahead alone"]
    # Long enough that both runs are seen waiting on a loaded machine before either deadline passes.
    await a.post("/v1/agents", json=_agent("patient", ask, human_timeout_s=2.0))
    await a.post("/v1/agents", json=_agent("strict", ask, human_timeout_s=2.0, on_human_timeout="fail"))
    patient = (await a.post("/v1/runs", json={"agent": "patient", "task": "t"})).json()["id"]
    strict = (await a.post("/v1/runs", json={"agent": "strict", "task": "t"})).json()["id"]
    await _wait_status(a, patient, "waiting_human", scheduler)
    await _wait_status(a, strict, "waiting_human", scheduler)
    # Block the event loop past both deadlines, so both timers fire late, together: each must
    # expire only its own request.
    time.sleep(2.5)
    run = await _wait_status(a, patient, "succeeded", scheduler)
    assert run["result"] == "went ahead alone"
    answers = [
        s["content"]["answer"] for s in run["steps"] if s["kind"] == "human" and "answer" in s["content"]
    ]
    assert len(answers) == 1 and "Nobody answered" in answers[0]
    failed = await _wait_status(a, strict, "failed", scheduler)
    assert "nobody answered" in failed["error"]
    expired = (await a.get("/v1/human-requests", params={"status": "expired"})).json()["requests"]
    assert len(expired) == 2


async def test_bad_calls_are_repaired_and_max_steps_fails_the_run(env):
    a, _, scheduler, _ = env
    repaired = [
        {"tool_calls": [{"name": "shell", "arguments": {"cmd": "oops"}}]},
        {"tool_calls": [{"name": "no_such_tool", "arguments": {}}]},
        {"tool_calls": [{"name": "shell", "arguments": {"command": "echo fixed"}}]},
        "fixed it",
    ]
    await a.post("/v1/agents", json=_agent("fixer", repaired))
    run_id = (await a.post("/v1/runs", json={"agent": "fixer", "task": "t"})).json()["id"]
    assert (await _wait_status(a, run_id, "succeeded", scheduler))["result"] == "fixed it"
    looping = [{"tool_calls": [{"name": "shell", "arguments": {"command": "true"}}]}] * 10
    await a.post("/v1/agents", json=_agent("looper", looping, max_steps=3))
    run_id = (await a.post("/v1/runs", json={"agent": "looper", "task": "t"})).json()["id"]
    assert (await _wait_status(a, run_id, "failed", scheduler))["error"]


async def test_run_validation(env):
    a, b, _, _ = env
    assert (await a.post("/v1/runs", json={"agent": "nobody", "task": "t"})).status_code == 404
    bad_llm = await a.post("/v1/agents", json=_agent("x", [], llm=None) | {"llm": {"provider": "nope"}})
    assert bad_llm.status_code == 422 and bad_llm.json()["error"]["field"] == "llm.provider"
    await a.post("/v1/agents", json=_agent("mine", ["ok"]))
    foreign = (await b.post("/v1/sessions", json={})).json()["id"]
    response = await a.post("/v1/runs", json={"agent": "mine", "task": "t", "session_id": foreign})
    assert response.status_code == 404


async def test_agents_remember_and_recall_across_runs(env):
    a, b, scheduler, _ = env
    first = [
        {"tool_calls": [{"name": "remember", "arguments": {"text": "The user prefers the colour blue."}}]},
        "noted",
    ]
    second = [{"tool_calls": [{"name": "recall", "arguments": {"query": "preferred colour"}}]}, "recalled"]
    await a.post("/v1/agents", json=_agent("rememberer", first, memory_scope="agent:shared-notes"))
    await a.post("/v1/agents", json=_agent("recaller", second, memory_scope="agent:shared-notes"))
    run1 = (await a.post("/v1/runs", json={"agent": "rememberer", "task": "note the preference"})).json()[
        "id"
    ]
    await _wait_status(a, run1, "succeeded", scheduler)
    run2 = (
        await a.post("/v1/runs", json={"agent": "recaller", "task": "what colour does the user prefer?"})
    ).json()["id"]
    run = await _wait_status(a, run2, "succeeded", scheduler)
    recalled = next(s for s in run["steps"] if s["kind"] == "tool")["content"]["content"]
    assert "blue" in recalled
    found = (await a.get("/v1/memory/agent:shared-notes/search", params={"q": "colour"})).json()["items"]
    assert [i["text"] for i in found] == ["The user prefers the colour blue."]
    assert (await b.get("/v1/memory/agent:shared-notes/search", params={"q": "colour"})).json()["items"] == []


async def test_reflection_critiques_live_in_the_agents_memory_scope(tmp_path):
    from agent_core.memory import MemoryService, SqlMemoryStore
    from toolserver.runs.scheduler import _Critiques

    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    memory = MemoryService(SqlMemoryStore(db))
    critiques = _Critiques(memory, "team-a", "agent:solver")
    await critiques.add("First attempt ignored the error message.")
    await memory.add("team-a", "agent:solver", "An ordinary fact, not a critique.")
    await critiques.add("Second attempt forgot to save the file.")
    assert await critiques.recent(5) == [
        "First attempt ignored the error message.",
        "Second attempt forgot to save the file.",
    ]
    assert await _Critiques(memory, "team-b", "agent:solver").recent(5) == []
    db.close()


async def test_an_answer_stored_just_before_a_crash_is_acted_on_after_recovery(env):
    from toolserver.runs.scheduler import RunScheduler

    a, _, scheduler, _ = env
    ask = [{"tool_calls": [{"name": "ask_human", "arguments": {"question": "go?"}}]}, "went"]
    await a.post("/v1/agents", json=_agent("crashy", ask))
    run_id = (await a.post("/v1/runs", json={"agent": "crashy", "task": "t"})).json()["id"]
    await _wait_status(a, run_id, "waiting_human", scheduler)
    request = (await a.get("/v1/human-requests", params={"status": "pending"})).json()["requests"][0]
    # The answer reaches the database, then the server dies before the resumed run saves anything.
    scheduler.humans.answer("team-a", request["id"], "yes")
    fresh = RunScheduler(scheduler.db, scheduler.tools)
    report = await fresh.recover()
    assert report["resumed"] == 1 and report["waiting"] == 0
    await fresh.idle()
    run = await _wait_status(a, run_id, "succeeded", fresh)
    assert run["result"] == "went"


async def test_a_run_interrupted_mid_way_resumes_from_its_last_checkpoint(env, monkeypatch):
    """A crash during the second model turn: after recovery the first turn and its tool call are not repeated."""
    from agent_core.llm import LLMClient, calls, reply
    from toolserver.runs import scheduler as scheduler_module
    from toolserver.runs.scheduler import RunScheduler

    a, _, scheduler, _ = env
    reached, never = asyncio.Event(), asyncio.Event()
    asked: list[int] = []  # assistant turns already in the conversation, per model call
    crashed = True

    class Model(LLMClient):
        async def complete(self, messages, tools=None):
            done = sum(1 for m in messages if m.get("role") == "assistant")
            asked.append(done)
            if done == 0:
                return calls(("shell", {"command": "echo first"}))
            if done == 1 and crashed:
                reached.set()
                await never.wait()  # the process dies here
            if done == 1:
                return calls(("shell", {"command": "echo second"}))
            return reply("both done")

    monkeypatch.setattr(scheduler_module, "build_llm", lambda *args, **kwargs: Model())
    await a.post("/v1/agents", json=_agent("steady", ["unused"]))
    session = (await a.post("/v1/sessions", json={})).json()["id"]
    run_id = (await a.post("/v1/runs", json={"agent": "steady", "task": "t", "session_id": session})).json()[
        "id"
    ]
    await asyncio.wait_for(reached.wait(), 30)
    scheduler._tasks[run_id].cancel()  # a crash: nothing more is written for this run
    await scheduler.idle()
    assert (await a.get(f"/v1/runs/{run_id}")).json()["status"] == "running"

    crashed = False
    fresh = RunScheduler(scheduler.db, scheduler.tools)
    assert (await fresh.recover())["resumed"] == 1
    run = await _wait_status(a, run_id, "succeeded", fresh)
    assert run["result"] == "both done"
    assert asked == [
        0,
        1,
        1,
        2,
    ]  # without the checkpoint the first turn would be asked again: [0, 1, 0, 1, 2]
    outputs = [json.loads(s["content"]["content"])["output"] for s in run["steps"] if s["kind"] == "tool"]
    assert outputs == ["ran: echo first", "ran: echo second"]  # each tool call ran once


async def test_recover_on_a_live_scheduler_leaves_its_runs_alone(env):
    """A second recover (a restarted ingress finding the scheduler alive) must not resume runs twice."""
    a, _, scheduler, _ = env
    await a.post("/v1/agents", json=_agent("ops2", ASKING))
    session = (await a.post("/v1/sessions", json={})).json()["id"]
    run_id = (
        await a.post("/v1/runs", json={"agent": "ops2", "task": "deploy", "session_id": session})
    ).json()["id"]
    await scheduler.recover()
    run = await _wait_status(a, run_id, "waiting_human", scheduler)
    assert run["error"] is None
