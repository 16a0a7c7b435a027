"""`toolserver env`: multi-agent environments — offline examples in the terminal, or on a server over HTTP."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from toolserver.cli.output import plain
from toolserver.cli.output import print_json as _print
from toolserver.client import Client, Request

__all__ = ["add_commands"]


def add_commands(commands: Any) -> None:
    """Add `env`."""
    env = commands.add_parser("env", help="multi-agent environments: examples, create, say, step, watch")
    cmds = env.add_subparsers(dest="env_command", metavar="ACTION", required=True)
    example = cmds.add_parser(
        "example",
        help="run an example environment offline in this terminal (scripted models)",
        description="chat-room: a moderator ('god') gives the floor to alice and bob and closes the room; "
        "pipeline: planner -> coder -> reviewer, each one's output the next one's task.",
    )
    example.add_argument("which", choices=["chat-room", "pipeline"])
    example.set_defaults(run=_example)
    create = cmds.add_parser("create", help="create an environment on the server from a JSON spec file")
    create.add_argument("spec", help="JSON file: {name, agents: [...], router, subscriptions?}")
    create.set_defaults(
        run=lambda a: _print(_send("POST", "/v1/environments", json.loads(Path(a.spec).read_text())))
    )
    say = cmds.add_parser("say", help="post a message into an environment")
    say.add_argument("name")
    say.add_argument("content")
    say.add_argument("--to", action="append", default=[], help="recipient agent (repeatable)")
    say.add_argument("--topic", default="general")
    say.set_defaults(
        run=lambda a: _print(
            _send(
                "POST",
                f"/v1/environments/{a.name}/messages",
                {"content": a.content, "recipients": a.to, "topic": a.topic},
            )
        )
    )
    step = cmds.add_parser("step", help="let the task center route messages and the agents act")
    step.add_argument("name")
    step.add_argument("--steps", type=int, default=1)
    step.set_defaults(run=_step)
    show = cmds.add_parser("show", help="agents, their status and the recent history")
    show.add_argument("name")
    show.set_defaults(run=lambda a: _print(_send("GET", f"/v1/environments/{a.name}")))
    watch = cmds.add_parser("watch", help="follow the conversation live (Ctrl-C to stop)")
    watch.add_argument("name")
    watch.set_defaults(run=_watch)
    rm = cmds.add_parser("rm", help="stop an environment (its history stays in the registry)")
    rm.add_argument("name")
    rm.set_defaults(run=lambda a: _send("DELETE", f"/v1/environments/{a.name}"))


def _send(method: str, path: str, body: Any = None) -> Any:
    """The raw JSON answer of one call (environment specs are files of the API's own shape)."""
    with Client() as client:
        return client.send(Request(method, path, Any, json=body))


def _line(message: dict[str, Any]) -> str:
    to = f" -> {', '.join(message['recipients'])}" if message.get("recipients") else ""
    return f"[{message.get('position', '?')}] {message['sender']}{to}: {message['content']}"


def _example(args: argparse.Namespace) -> int:
    from agent_core.environment import examples

    run = examples.run_chat_room if args.which == "chat-room" else examples.run_pipeline
    for message in asyncio.run(run()):
        print(_line(message.to_dict()))
    return 0


def _step(args: argparse.Namespace) -> int:
    steps = _send("POST", f"/v1/environments/{args.name}/step", {"steps": args.steps})["steps"]
    for step in steps:
        for message in step["published"]:
            print(_line(message))
        for agent, error in step["failed"].items():
            print(f"  ! {agent} failed: {error.get('message')}", file=sys.stderr)
    return 0


def _watch(args: argparse.Namespace) -> int:
    with Client() as client:
        for message in client.environments.events(args.name):
            print(_line(plain(message)), flush=True)
    return 0
