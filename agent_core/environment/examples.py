"""Two offline examples with scripted models: a moderated chat room and a fixed-flow pipeline.

    messages = await run_chat_room()            # in process
    messages = await run_pipeline(hub, agents)  # or with a RemoteHub and agents on Ray actors

Both take their agents as JSON configs (`chat_room_agents()`, `pipeline_agents()`), so the same
example runs with `LoopAgent`s in process or with agent actors spread over a Ray cluster.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from agent_core.environment.agents import build_agent
from agent_core.environment.base import EnvironmentAgent, HubAPI
from agent_core.environment.center import TaskCenter
from agent_core.environment.hub import Hub
from agent_core.environment.messages import Message
from agent_core.environment.registry import AgentInfo
from agent_core.environment.routing import CustomRouter, Router
from agent_core.environment.sop import linear_sop

__all__ = [
    "CHAT_ROOM_TRANSCRIPT",
    "PIPELINE_TRANSCRIPT",
    "chat_room_agents",
    "moderated_router",
    "pipeline_agents",
    "run_chat_room",
    "run_pipeline",
    "transcript_lines",
]

Line = tuple[str, tuple[str, ...], str]

_TOPIC = "Should we ship the 2.0 release on Friday?"
_GOD = [
    "NEXT: alice. Alice, you own the release: are we ready to ship on Friday?",
    "NEXT: bob. Bob, you are on call this weekend: what do you think?",
    "NEXT: alice. Alice, can the release wait until Monday?",
    "END. Decision: we ship 2.0 on Monday morning, with Bob and Alice both around.",
]
_ALICE = [
    "Ready: the tests are green and the changelog is written.",
    "Yes, nothing in it is urgent; Monday is fine.",
]
_BOB = ["Not on a Friday: half the team is away and a rollback would be mine alone."]

_TASK = "Write a function that returns the total of the 'amount' column of a CSV file."
_PLANNER = "Plan: 1) open the file with csv.DictReader 2) sum float(row['amount']) 3) return the sum."
_CODER = (
    "def total(path):\n    import csv\n    with open(path) as f:\n"
    "        return sum(float(row['amount']) for row in csv.DictReader(f))"
)
_REVIEWER = "APPROVED: the function follows the plan and closes the file."

CHAT_ROOM_TRANSCRIPT: list[Line] = [
    ("user", ("god",), _TOPIC),
    ("god", ("alice",), _GOD[0]),
    ("alice", ("god",), _ALICE[0]),
    ("god", ("bob",), _GOD[1]),
    ("bob", ("god",), _BOB[0]),
    ("god", ("alice",), _GOD[2]),
    ("alice", ("god",), _ALICE[1]),
    ("god", (), _GOD[3]),
]
"""Who said what to whom in the chat room: the moderator gives the floor, and closes it with END."""

PIPELINE_TRANSCRIPT: list[Line] = [
    ("user", ("planner",), _TASK),
    ("planner", ("coder",), _PLANNER),
    ("coder", ("reviewer",), _CODER),
    ("reviewer", (), _REVIEWER),
]
"""The pipeline: each agent's output is the next one's task; the last reply ends the flow."""


def chat_room_agents() -> list[dict[str, Any]]:
    """A moderator ("god") and two engineers, as `LoopAgent` configs with scripted models."""
    rules = "Reply with 'NEXT: <name>. <question>' to give the floor, or 'END. <decision>' to close."
    return [
        _loop("god", "moderator", f"You moderate a discussion between alice and bob. {rules}", _GOD),
        _loop("alice", "engineer", "You are Alice, the release owner. Answer the moderator briefly.", _ALICE),
        _loop("bob", "engineer", "You are Bob, on call this weekend. Answer the moderator briefly.", _BOB),
    ]


def pipeline_agents() -> list[dict[str, Any]]:
    """Planner, coder and reviewer, as `LoopAgent` configs with scripted models."""
    return [
        _loop("planner", "planner", "Turn the task into a short numbered plan.", [_PLANNER]),
        _loop("coder", "coder", "Write the Python code for the plan you are given.", [_CODER]),
        _loop("reviewer", "reviewer", "Review the code; answer APPROVED or CHANGES NEEDED.", [_REVIEWER]),
    ]


def moderated_router(moderator: str = "god") -> Router:
    """Everyone speaks to the moderator; the moderator's `NEXT: <name>` gives that agent the floor."""

    def moderated(message: Message, agents: Sequence[AgentInfo]) -> list[str]:
        if message.sender != moderator:
            return [moderator]
        chosen = re.match(r"\s*NEXT:\s*([A-Za-z0-9_.:@-]+?)[.,:]?(?:\s|$)", message.content)
        return [chosen.group(1)] if chosen else []  # END, or anything else, closes the floor

    return CustomRouter(moderated, "moderated")


async def run_chat_room(
    hub: HubAPI | None = None, agents: Mapping[str, EnvironmentAgent] | None = None
) -> list[Message]:
    """Run the moderated chat room to its end; returns the stored transcript."""
    center = TaskCenter(
        hub or Hub("examples", "chat-room"),
        agents if agents is not None else _build(chat_room_agents()),
        moderated_router(),
    )
    await center.start()
    await center.post(_TOPIC, sender="user")
    await center.run(max_steps=20)
    return await center.transcript()


async def run_pipeline(
    hub: HubAPI | None = None, agents: Mapping[str, EnvironmentAgent] | None = None
) -> list[Message]:
    """Run planner -> coder -> reviewer on one task (a linear SOP); returns the stored transcript."""
    center = TaskCenter(
        hub or Hub("examples", "pipeline"),
        agents if agents is not None else _build(pipeline_agents()),
        linear_sop(["planner", "coder", "reviewer"]),
    )
    await center.start()
    await center.post(_TASK, sender="user")
    await center.run(max_steps=10)
    return await center.transcript()


def transcript_lines(messages: Sequence[Message]) -> list[Line]:
    """(sender, delivered_to, content) of each message: the shape the expected transcripts have."""
    return [(m.sender, m.delivered_to, m.content) for m in messages]


def _loop(name: str, role: str, system_prompt: str, replies: list[str]) -> dict[str, Any]:
    return {
        "kind": "loop",
        "name": name,
        "role": role,
        "system_prompt": system_prompt,
        "max_steps": 3,
        "topic": None,
        "llm": {"provider": "scripted", "replies": list(replies)},
    }


def _build(configs: list[dict[str, Any]]) -> dict[str, EnvironmentAgent]:
    return {c["name"]: build_agent(c) for c in configs}
