"""Operations of agents, runs, human requests, memory and environments, as `Request`s."""

from __future__ import annotations

from typing import Any

from toolserver import api
from toolserver.client._ops import _id, _spec
from toolserver.client._request import Request

__all__ = ["AgentOps", "MemoryOps", "EnvironmentOps"]


class AgentOps:
    """Agents, their runs, and the questions they ask humans."""

    @staticmethod
    def define(spec: dict[str, Any]) -> Request[api.Agent]:
        return Request("POST", "/v1/agents", api.Agent, json=spec)

    @staticmethod
    def agents() -> Request[list[api.Agent]]:
        return Request("GET", "/v1/agents", list[api.Agent], unwrap="agents")

    @staticmethod
    def agent(name: str) -> Request[api.Agent]:
        return Request("GET", f"/v1/agents/{_id(name)}", api.Agent)

    @staticmethod
    def start_run(agent: str, task: str, session_id: str | None = None) -> Request[api.RunStarted]:
        body = {"agent": agent, "task": task, "session_id": session_id}
        return Request("POST", "/v1/runs", api.RunStarted, json=body)

    @staticmethod
    def run(run_id: str) -> Request[api.Run]:
        return Request("GET", f"/v1/runs/{_id(run_id)}", api.Run)

    @staticmethod
    def runs(status: str | None = None) -> Request[list[api.Run]]:
        return Request("GET", "/v1/runs", list[api.Run], params=_spec(status=status), unwrap="runs")

    @staticmethod
    def run_events_path(run_id: str, after: int) -> str:
        return f"/v1/runs/{_id(run_id)}/events?after={int(after)}"

    @staticmethod
    def human_requests(status: str | None = "pending") -> Request[list[api.HumanRequest]]:
        params = _spec(status=status)
        return Request("GET", "/v1/human-requests", list[api.HumanRequest], params=params, unwrap="requests")

    @staticmethod
    def human_request(request_id: str, wait_s: float = 0.0) -> Request[api.HumanRequest]:
        where = f"/v1/human-requests/{_id(request_id)}"
        return Request("GET", where, api.HumanRequest, params={"wait_s": wait_s})

    @staticmethod
    def answer(request_id: str, answer: str) -> Request[api.HumanRequest]:
        where = f"/v1/human-requests/{_id(request_id)}/answer"
        return Request("POST", where, api.HumanRequest, json={"answer": answer})


class MemoryOps:
    """Scoped memories: `namespace`, or `agent:`, `run:`, `session:`, `shared:` followed by a name."""

    @staticmethod
    def add(scope: str, text: str, metadata: dict[str, Any] | None = None) -> Request[api.MemoryItem]:
        body = _spec(text=text, metadata=metadata)
        return Request("POST", f"/v1/memory/{_id(scope)}", api.MemoryItem, json=body)

    @staticmethod
    def search(scope: str, query: str, k: int = 5) -> Request[list[api.MemoryItem]]:
        where = f"/v1/memory/{_id(scope)}/search"
        return Request("GET", where, list[api.MemoryItem], params={"q": query, "k": k}, unwrap="items")

    @staticmethod
    def recent(scope: str, k: int = 20) -> Request[list[api.MemoryItem]]:
        return Request(
            "GET", f"/v1/memory/{_id(scope)}", list[api.MemoryItem], params={"k": k}, unwrap="items"
        )

    @staticmethod
    def get(scope: str, item_id: str) -> Request[api.MemoryItem]:
        return Request("GET", f"/v1/memory/{_id(scope)}/{_id(item_id)}", api.MemoryItem)

    @staticmethod
    def delete(scope: str, item_id: str) -> Request[None]:
        return Request("DELETE", f"/v1/memory/{_id(scope)}/{_id(item_id)}", None)

    @staticmethod
    def clear(scope: str) -> Request[int]:
        return Request("DELETE", f"/v1/memory/{_id(scope)}", int, unwrap="deleted")


class EnvironmentOps:
    """Multi-agent environments."""

    @staticmethod
    def create(
        name: str,
        agents: list[dict[str, Any]],
        router: str | dict[str, Any] | None = None,
        subscriptions: list[dict[str, str]] | None = None,
        act_timeout_s: float | None = None,
    ) -> Request[api.Environment]:
        body = _spec(
            name=name, agents=agents, router=router, subscriptions=subscriptions, act_timeout_s=act_timeout_s
        )
        return Request("POST", "/v1/environments", api.Environment, json=body)

    @staticmethod
    def names() -> Request[list[str]]:
        return Request("GET", "/v1/environments", list[str], unwrap="environments")

    @staticmethod
    def describe(name: str, after: int = 0, limit: int = 100) -> Request[api.Environment]:
        params = {"after": after, "limit": limit}
        return Request("GET", f"/v1/environments/{_id(name)}", api.Environment, params=params)

    @staticmethod
    def post(
        name: str,
        content: str,
        sender: str = "user",
        recipients: list[str] | None = None,
        topic: str = "general",
        metadata: dict[str, Any] | None = None,
    ) -> Request[api.HubMessage]:
        body = {
            "content": content,
            "sender": sender,
            "recipients": recipients or [],
            "topic": topic,
            "metadata": metadata or {},
        }
        return Request("POST", f"/v1/environments/{_id(name)}/messages", api.HubMessage, json=body)

    @staticmethod
    def step(name: str, steps: int = 1) -> Request[list[api.StepReport]]:
        where = f"/v1/environments/{_id(name)}/step"
        return Request("POST", where, list[api.StepReport], json={"steps": steps}, unwrap="steps")

    @staticmethod
    def delete(name: str) -> Request[None]:
        return Request("DELETE", f"/v1/environments/{_id(name)}", None)

    @staticmethod
    def events_path(name: str, after: int, follow: bool) -> str:
        return (
            f"/v1/environments/{_id(name)}/events?after={int(after)}&follow={'true' if follow else 'false'}"
        )
