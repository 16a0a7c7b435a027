"""/v1/environments in-process: create, post, step, watch, tenancy — with echo and scripted LLM agents."""

from __future__ import annotations

import json

import pytest

from foundation.errors import ValidationFailed


@pytest.fixture
def clients(two_tenants):
    return two_tenants["a"], two_tenants["b"]


PIPELINE = {
    "name": "pipeline",
    "agents": [
        {
            "kind": "loop",
            "name": "writer",
            "role": "writer",
            "llm": {"provider": "scripted", "replies": ["a draft about tides"]},
        },
        {
            "kind": "loop",
            "name": "editor",
            "role": "editor",
            "llm": {"provider": "scripted", "replies": ["an edited draft about tides"]},
        },
    ],
    "router": {"kind": "send_to", "follows": {"editor": ["writer"]}},
}


async def test_fixed_flow_pipeline_over_http(clients):
    a, _ = clients
    created = await a.post("/v1/environments", json=PIPELINE)
    assert created.status_code == 201, created.text
    assert {agent["name"] for agent in created.json()["agents"]} == {"writer", "editor"}
    posted = await a.post(
        "/v1/environments/pipeline/messages", json={"content": "write about tides", "recipients": ["writer"]}
    )
    assert posted.status_code == 201
    steps = (await a.post("/v1/environments/pipeline/step", json={"steps": 5})).json()["steps"]
    acted = [name for step in steps for name in step["acted"]]
    assert acted[:2] == ["writer", "editor"]
    history = (await a.get("/v1/environments/pipeline")).json()["history"]
    assert [(m["sender"], m["content"]) for m in history] == [
        ("user", "write about tides"),
        ("writer", "a draft about tides"),
        ("editor", "an edited draft about tides"),
    ]


async def test_round_robin_broadcast_events_and_tenancy(clients):
    a, b = clients
    spec = {
        "name": "room",
        "agents": [
            {"kind": "echo", "name": "alice", "role": "member", "prefix": "alice heard: ", "max_replies": 1},
            {"kind": "echo", "name": "bob", "role": "member", "prefix": "bob heard: ", "max_replies": 1},
        ],
        "router": "broadcast",
    }
    assert (await a.post("/v1/environments", json=spec)).status_code == 201
    assert (await a.post("/v1/environments", json=spec)).status_code == 409
    await a.post("/v1/environments/room/messages", json={"content": "hello"})
    await a.post("/v1/environments/room/step", json={"steps": 3})
    response = await a.get("/v1/environments/room/events", params={"follow": "false"})
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [
        json.loads(line.removeprefix("data: "))
        for line in response.text.splitlines()
        if line.startswith("data: ")
    ]
    assert len(events) == 3
    assert events[0]["content"] == "hello"
    assert sorted(e["content"] for e in events[1:]) == ["alice heard: hello", "bob heard: hello"]
    # another tenant sees none of it
    assert (await b.get("/v1/environments")).json()["environments"] == []
    assert (await b.get("/v1/environments/room")).status_code == 404
    assert (await b.post("/v1/environments/room/messages", json={"content": "x"})).status_code == 404
    assert (await a.delete("/v1/environments/room")).status_code == 204
    assert (await a.get("/v1/environments/room")).status_code == 404


async def test_bad_environment_specs_name_the_field(clients):
    a, _ = clients
    bad_kind = await a.post(
        "/v1/environments", json={"name": "x", "agents": [{"kind": "robot", "name": "r", "role": "r"}]}
    )
    assert bad_kind.status_code == 422 and bad_kind.json()["error"]["field"].startswith("agents[0]")
    bad_router = await a.post(
        "/v1/environments",
        json={
            "name": "y",
            "agents": [{"kind": "echo", "name": "e", "role": "r"}],
            "router": {"kind": "teleport"},
        },
    )
    assert bad_router.status_code == 422
    empty = await a.post("/v1/environments", json={"name": "z", "agents": []})
    assert empty.status_code == 422


async def test_llm_agents_are_under_the_servers_egress_policy(clients, monkeypatch):
    """A tenant's environment agent cannot aim its LLM inward, nor borrow the server's OPENAI_API_KEY."""
    a, _ = clients
    monkeypatch.setenv("OPENAI_API_KEY", "sk-operator")

    def spec(name: str, llm: dict) -> dict:
        return {"name": name, "agents": [{"kind": "loop", "name": "w", "role": "w", "llm": llm}]}

    inward = await a.post("/v1/environments", json=spec("inward", {"base_url": "http://169.254.169.254/v1"}))
    assert inward.status_code == 422 and inward.json()["error"]["field"] == "agents[0].config.llm.base_url"
    # The tenant cannot widen the policy by writing the server's field itself.
    sneaky = {"base_url": "http://10.0.0.7/v1", "model": "m", "_server_egress": {"allow": "*"}}
    assert (await a.post("/v1/environments", json=spec("sneaky", sneaky))).status_code == 422
    borrowed = {"base_url": "https://llm.example/v1", "model": "m", "api_key_env": "OPENAI_API_KEY"}
    refused = await a.post("/v1/environments", json=spec("borrowed", borrowed))
    assert (
        refused.status_code == 422 and refused.json()["error"]["field"] == "agents[0].config.llm.api_key_env"
    )
    public = {"base_url": "https://llm.example/v1", "model": "m"}
    created = await a.post("/v1/environments", json=spec("public", public))
    assert created.status_code == 201, created.text
    shown = created.json()["agents"][0]["config"]["llm"]
    assert shown == public  # the operator's policy is not shown to the tenant


def test_library_use_keeps_its_own_environment(monkeypatch):
    """Outside the server an endpoint needs a runtime that serves one; ProcessRuntime keys it from here."""
    from agent_core.environment import ProcessRuntime, build_agent

    monkeypatch.setenv("OPENAI_API_KEY", "sk-mine")
    config = {
        "kind": "loop",
        "name": "w",
        "role": "w",
        "llm": {"base_url": "http://127.0.0.1:11434/v1", "model": "m"},
    }
    assert build_agent(config, ProcessRuntime()).llm.api_key == "sk-mine"  # type: ignore[attr-defined]
    with pytest.raises(ValidationFailed) as offline:  # the default runtime serves scripted models only
        build_agent(config)
    assert offline.value.field == "config.llm"


async def test_a_sandboxed_agent_runs_its_tools_in_its_own_session(clients):
    a, b = clients
    spec = {
        "name": "lab",
        "agents": [
            {
                "kind": "loop",
                "name": "coder",
                "role": "coder",
                "sandbox": True,
                "tools": ["shell"],
                "llm": {
                    "provider": "scripted",
                    "replies": [
                        {
                            "tool_calls": [
                                {"name": "shell", "arguments": {"command": "echo from-the-sandbox"}}
                            ]
                        },
                        "ran it",
                    ],
                },
                # the server's old hidden key means nothing now: the session is the server's to choose
                "_server_tools": {"namespace": "team-b", "session": "ses_someone_else", "schemas": []},
            }
        ],
    }
    created = await a.post("/v1/environments", json=spec)
    assert created.status_code == 201, created.text
    agent = created.json()["agents"][0]
    session_id = agent["session_id"]
    assert "_server_tools" not in agent["config"]
    assert session_id in {s["id"] for s in (await a.get("/v1/sessions")).json()["sessions"]}
    assert (await b.get("/v1/sessions")).json()["sessions"] == []
    await a.post("/v1/environments/lab/messages", json={"content": "run it", "recipients": ["coder"]})
    steps = (await a.post("/v1/environments/lab/step", json={"steps": 3})).json()["steps"]
    assert steps[0]["acted"] == ["coder"]
    history = (await a.get("/v1/environments/lab")).json()["history"]
    assert [(m["sender"], m["content"]) for m in history][-1] == ("coder", "ran it")
    calls = (await a.get("/v1/audit")).json()["calls"]
    assert any(c["tool"] == "shell" and c["session_id"] == session_id and c["status"] == "ok" for c in calls)
    # ask_human cannot be an environment agent's tool, and deleting the environment closes the session.
    asking = {**spec, "name": "asking"}
    asking["agents"] = [{**spec["agents"][0], "tools": ["shell", "ask_human"]}]
    refused = await a.post("/v1/environments", json=asking)
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "agents[0].tools"
    assert (await a.delete("/v1/environments/lab")).status_code == 204
    assert session_id not in {s["id"] for s in (await a.get("/v1/sessions")).json()["sessions"]}


async def test_a_failed_create_leaves_no_session_and_describe_is_stable(clients):
    a, _ = clients
    agent = {
        "kind": "loop",
        "name": "coder",
        "role": "coder",
        "sandbox": True,
        "tools": ["shell"],
        "llm": {"provider": "scripted", "replies": ["ok"]},
    }
    bad = {
        "name": "broken",
        "agents": [agent],
        "subscriptions": [{"topic": "not a topic!", "agent": "coder"}],
    }
    assert (await a.post("/v1/environments", json=bad)).status_code == 422
    assert (await a.get("/v1/sessions")).json()["sessions"] == []
    assert "broken" not in (await a.get("/v1/environments")).json()["environments"]
    created = await a.post("/v1/environments", json={"name": "stable", "agents": [agent]})
    assert created.status_code == 201, created.text
    first = (await a.get("/v1/environments/stable")).json()["agents"][0]
    second = (await a.get("/v1/environments/stable")).json()["agents"][0]
    assert first["session_id"] and first["session_id"] == second["session_id"]


def test_actor_names_of_different_environments_never_collide():
    from agent_core.environment.actors import agent_actor_name, hub_actor_name

    assert hub_actor_name("a-b", "c") != hub_actor_name("a", "b-c")
    assert agent_actor_name("a-b", "c", "d", 0) != agent_actor_name("a", "b-c", "d", 0)
    assert agent_actor_name("a", "b", "c-agent-d", 0) != agent_actor_name("a", "b-agent-c", "d", 0)


def test_the_servers_agent_runtime_crosses_to_the_agent_actors():
    """What Ray pickles to an agent actor: the LLM policy and the agent's session, and nothing else."""
    import pickle

    from agent_core.llm import parse_llm_config
    from toolserver.outbound.egress import EgressPolicy
    from toolserver.runs.llm import LLMPolicy
    from toolserver.service.environment_tools import (
        AgentSession,
        CenterRoute,
        ServerAgentRuntime,
        SessionToolExecutor,
    )

    shell = {"type": "function", "function": {"name": "shell", "description": "", "parameters": {}}}
    runtime = ServerAgentRuntime(
        LLMPolicy(EgressPolicy.parse("10.0.0.0/8")),
        "team-a",
        CenterRoute("environment-center", "toolserver"),
        {"coder": AgentSession("ses_1", (shell,))},
    )
    shipped = pickle.loads(pickle.dumps(runtime))
    assert shipped == runtime
    tools = shipped.make_tools({"name": "coder"})
    assert isinstance(tools, SessionToolExecutor) and tools.tool_schemas() == [shell]
    assert (tools.namespace, tools.session.session_id) == ("team-a", "ses_1")
    assert shipped.make_tools({"name": "writer"}).tool_schemas() == []
    inside = parse_llm_config({"base_url": "http://10.1.2.3/v1", "model": "m"}, field="config.llm")
    assert shipped.make_llm(inside).base_url == "http://10.1.2.3/v1"  # type: ignore[attr-defined]
    outside = parse_llm_config({"base_url": "http://192.168.1.1/v1", "model": "m"}, field="config.llm")
    with pytest.raises(ValidationFailed) as refused:
        shipped.make_llm(outside)
    assert refused.value.field == "config.llm.base_url"
