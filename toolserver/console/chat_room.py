"""The "Chat room" page (the chatbot mode): a multi-agent environment's messages, live; speak in it, step it."""

from __future__ import annotations

from typing import Any

import gradio as gr

from toolserver import api
from toolserver.client import Client
from toolserver.console.connection import Connection, guarded

__all__ = ["build", "chat_room_spec"]

POLL_S = 1.0
EVERYONE = "(everyone)"
TOPIC = "Should we ship the 2.0 release on Friday?"


def chat_room_spec(name: str = "chat-room") -> dict[str, Any]:
    """The offline chat-room example as an environment of the API: a moderator gives alice and bob the floor.

    The example's own router is a Python function; over the API the same floor rules are an SOP: the
    moderator's `NEXT: <name>` hands the turn to that engineer, whose reply goes back to the moderator, and
    its `END` closes the room.
    """
    from agent_core.environment.examples import chat_room_agents  # its agent configs, loaded on demand

    def turn(agent: str) -> dict[str, Any]:
        return {"agent": agent, "transitions": [{"to": "moderate"}]}

    floor = [{"when": {"contains": f"NEXT: {who}"}, "to": f"{who}_speaks"} for who in ("alice", "bob")]
    return {
        "name": name,
        "agents": chat_room_agents(),
        "router": {
            "kind": "sop",
            "start": "moderate",
            "states": {
                "moderate": {
                    "agent": "god",
                    "transitions": [*floor, {"when": {"regex": r"^\s*END\b"}, "to": "done"}],
                },
                "alice_speaks": turn("alice"),
                "bob_speaks": turn("bob"),
                "done": {"terminal": True},
            },
        },
    }


def _bubble(message: api.HubMessage, roles: dict[str, str]) -> dict[str, str]:
    """A chat bubble: agents on the left, people (anyone who is not an agent of the room) on the right."""
    role = roles.get(message.sender)
    who = f"**{message.sender}**" + (f" · {role}" if role else "")
    to = message.delivered_to or message.recipients
    arrow = f" → {', '.join(to)}" if to else " → (nobody)"
    return {
        "role": "assistant" if role else "user",
        "content": f"{who}{arrow}\n\n{message.content}",
    }


def _agents_table(env: api.Environment) -> list[list[Any]]:
    pending = env.pending
    return [
        [a.get("name"), a.get("role"), a.get("status"), pending.get(str(a.get("name")), 0)]
        for a in env.agents
    ]


def _room(client: Client, name: str) -> tuple[api.Environment, dict[str, str]]:
    env = client.environments.get(name, limit=1)
    return env, {str(a.get("name")): str(a.get("role") or "agent") for a in env.agents}


def build(app: gr.Blocks, conn: Connection, key: gr.State) -> None:
    """The page's components and events, inside the current tab."""
    with gr.Row():
        room = gr.Dropdown(
            label="Environment", choices=[], allow_custom_value=True, scale=2, elem_id="chat-room-pick"
        )
        reload = gr.Button("Refresh", scale=0)
        new_name = gr.Textbox("chat-room", label="New room's name", scale=1, elem_id="chat-new-name")
        create = gr.Button("Create the chat-room example", scale=0, elem_id="chat-create")
    with gr.Row():
        with gr.Column(scale=3):
            chat = gr.Chatbot(
                label="Messages",
                height=520,
                group_consecutive_messages=False,
                allow_tags=False,
                elem_id="chat-messages",
            )
        with gr.Column(scale=1):
            agents = gr.Dataframe(
                headers=["agent", "role", "status", "inbox"],
                label="Agents",
                interactive=False,
                elem_id="chat-agents",
            )
            center = gr.Markdown(elem_id="chat-center")
    with gr.Row():
        sender = gr.Textbox("user", label="Speak as", scale=1, elem_id="chat-sender")
        to = gr.Dropdown(
            label="To",
            choices=[EVERYONE],
            value=EVERYONE,
            allow_custom_value=True,
            scale=1,
            elem_id="chat-to",
        )
        text = gr.Textbox(label="Message", scale=4, elem_id="chat-text")
        send = gr.Button("Send", variant="primary", scale=0, elem_id="chat-send")
    with gr.Row():
        step = gr.Button("Step", elem_id="chat-step")
        run = gr.Button("Let it run (up to 20 steps)", elem_id="chat-run")
    position = gr.State(0)
    timer = gr.Timer(POLL_S)

    def rooms(tab_key: str, chosen: str | None) -> Any:
        if not conn.has_key(tab_key):
            return gr.skip()
        names = conn.client(tab_key).environments.list()
        return gr.update(choices=names, value=chosen if chosen in names else (names[0] if names else None))

    def open_room(tab_key: str, name: str | None) -> tuple[Any, ...]:
        """Everything of a room from its first message on."""
        if not name:
            return [], [], "", 0, gr.update(choices=[EVERYONE], value=EVERYONE)
        client = conn.client(tab_key)
        env, roles = _room(client, name)
        messages = list(client.environments.events(name, after=0, follow=False))
        last = max((m.position or 0 for m in messages), default=0)
        choices = [EVERYONE, *roles]
        return (
            [_bubble(m, roles) for m in messages],
            _agents_table(env),
            _center(env),
            last,
            gr.update(choices=choices, value=EVERYONE),
        )

    def poll(tab_key: str, name: str | None, after: int, shown: list[dict[str, Any]]) -> tuple[Any, ...]:
        """New messages since `after` (the server's event stream, read to its current end), and the agents."""
        if not name or not conn.has_key(tab_key):
            return gr.skip(), gr.skip(), gr.skip(), after
        try:
            client = conn.client(tab_key)
            env, roles = _room(client, name)
            messages = list(client.environments.events(name, after=after, follow=False))
        except Exception:  # a tick never raises; a room that went away stays as it was last seen
            return gr.skip(), gr.skip(), gr.skip(), after
        table, state = _agents_table(env), _center(env)
        if not messages:
            return gr.skip(), table, state, after
        last = max(m.position or 0 for m in messages)
        return [*shown, *(_bubble(m, roles) for m in messages)], table, state, max(after, last)

    def create_room(tab_key: str, name: str) -> Any:
        created = conn.client(tab_key).environments.create(**chat_room_spec(name.strip() or "chat-room"))
        gr.Info(f"Room {created.name} is open: say something to the moderator (god), then step it.")
        return gr.update(choices=conn.client(tab_key).environments.list(), value=created.name)

    def speak(tab_key: str, name: str | None, who: str, recipient: str, content: str) -> Any:
        if not name:
            raise gr.Error("choose or create a room first")
        if not content.strip():
            raise gr.Error("write a message first")
        client = conn.client(tab_key)
        _, roles = _room(client, name)
        recipients = list(roles) if recipient == EVERYONE else [recipient]
        client.environments.post(name, content, sender=who.strip() or "user", recipients=recipients)
        return ""

    def advance(steps: int) -> Any:
        def handler(tab_key: str, name: str | None) -> None:
            if not name:
                raise gr.Error("choose or create a room first")
            reports = conn.client(tab_key).environments.step(name, steps)
            failed = {agent: error for r in reports for agent, error in r.failed.items()}
            for agent, error in failed.items():
                gr.Warning(f"{agent} failed: {error.get('message', error)}")
            if reports and reports[-1].finished:
                gr.Info("The room is closed: the moderator ended it.")

        return guarded(conn.url, handler)

    opened = guarded(conn.url, open_room)
    view = [chat, agents, center, position, to]
    for trigger in (app.load, key.change, reload.click):
        trigger(guarded(conn.url, rooms), [key, room], [room])
    room.change(opened, [key, room], view)
    create.click(guarded(conn.url, create_room), [key, new_name], [room])
    timer.tick(poll, [key, room, position, chat], [chat, agents, center, position], show_progress="hidden")
    send.click(guarded(conn.url, speak), [key, room, sender, to, text], [text])
    step.click(advance(1), [key, room], None)
    run.click(advance(20), [key, room], None)


def _center(env: api.Environment) -> str:
    router = env.center.get("router") or {}
    state = router.get("state")
    parts = [f"router: {router.get('kind', '?')}"]
    if state:
        parts.append(f"state **{state}**")
    parts.append(f"{env.center.get('steps', 0)} steps")
    if router.get("finished"):
        parts.append("**closed**")
    return " · ".join(parts)
