"""`toolserver agent | human | demo`: define and run agents, answer their questions at the terminal."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from toolserver.cli.output import plain
from toolserver.cli.output import print_json as _print
from toolserver.client import Client

__all__ = ["add_commands", "follow_run"]


def add_commands(commands: Any) -> None:
    """Add `agent`, `human` and `demo`."""
    agent = commands.add_parser("agent", help="define, list and run agents")
    agent_cmds = agent.add_subparsers(dest="agent_command", metavar="ACTION", required=True)
    create = agent_cmds.add_parser(
        "create", help="define (or redefine) an agent on an OpenAI-compatible model"
    )
    create.add_argument("--name", required=True)
    create.add_argument("--system-prompt", default="You are a helpful agent.")
    create.add_argument(
        "--tools", default="shell,python,read_file,write_file", help="comma-separated tool names"
    )
    create.add_argument("--model", required=True, help="model name on the server")
    create.add_argument(
        "--base-url",
        required=True,
        help="e.g. https://api.openai.com/v1, or a local Ollama/vLLM URL such as http://127.0.0.1:11434/v1 "
        "(the server reaches only public addresses unless TOOLSERVER_EGRESS_ALLOW lists it, e.g. 127.0.0.1:11434)",
    )
    key = create.add_mutually_exclusive_group()
    key.add_argument(
        "--api-key-env",
        metavar="NAME",
        help="environment variable on this machine holding the API key; stored as your secret NAME",
    )
    key.add_argument(
        "--api-key-secret", metavar="NAME", help="your secret (PUT /v1/secrets/NAME) holding the key"
    )
    key.add_argument(
        "--server-key-env",
        metavar="NAME",
        help="environment variable of the server holding the key (the operator lists it in TOOLSERVER_LLM_KEY_ENVS)",
    )
    create.add_argument(
        "--strategy", choices=["function_calling", "plan_execute", "reflection"], default="function_calling"
    )
    create.add_argument("--memory-scope", help="e.g. agent:NAME to give it remember/recall")
    create.add_argument("--max-steps", type=int, default=20)
    create.set_defaults(run=_create)
    agent_cmds.add_parser("list", help="your agents").set_defaults(
        run=lambda a: _print({"agents": Client().agents.list()})
    )
    run = agent_cmds.add_parser(
        "run", help="run an agent on a task, printing steps live; asks you when it asks"
    )
    run.add_argument("--agent", required=True)
    run.add_argument("--session", help="session id for its sandbox tools")
    run.add_argument("task")
    run.set_defaults(run=lambda a: follow_run(Client(), Client().runs.start(a.agent, a.task, a.session).id))

    human = commands.add_parser("human", help="questions agents asked a human")
    human_cmds = human.add_subparsers(dest="human_command", metavar="ACTION", required=True)
    human_cmds.add_parser("list", help="pending questions").set_defaults(
        run=lambda a: _print({"requests": Client().humans.list("pending")})
    )
    answer = human_cmds.add_parser("answer", help="answer a question; the waiting run resumes")
    answer.add_argument("request_id")
    answer.add_argument("answer")
    answer.set_defaults(run=lambda a: _print(Client().humans.answer(a.request_id, a.answer)))

    demo = commands.add_parser(
        "demo",
        help="an offline end-to-end agent run with a scripted model (needs `toolserver up`)",
        description="Defines the agent `demo` with a scripted model that writes code into a sandbox, runs it, "
        "reads the file it produced, asks you a question and finishes — no LLM or network needed.",
    )
    demo.add_argument(
        "--yes", action="store_true", help="answer the agent's question with 'yes' automatically"
    )
    demo.set_defaults(run=_demo)


def _create(args: argparse.Namespace) -> None:
    llm = {"provider": "openai", "base_url": args.base_url, "model": args.model}
    client = Client()
    if args.api_key_env:
        value = os.environ.get(args.api_key_env)
        if not value:
            raise SystemExit(f"error: the environment variable {args.api_key_env} is not set here")
        client.secrets.put(args.api_key_env, value)
        llm["api_key_secret"] = args.api_key_env
    elif args.api_key_secret:
        llm["api_key_secret"] = args.api_key_secret
    elif args.server_key_env:
        llm["api_key_env"] = args.server_key_env
    body = {
        "name": args.name,
        "system_prompt": args.system_prompt,
        "tools": [t for t in args.tools.split(",") if t],
        "llm": llm,
        "strategy": args.strategy,
        "max_steps": args.max_steps,
    }
    if args.memory_scope:
        body["memory_scope"] = args.memory_scope
    _print(client.agents.define(**body))


def _describe(step: dict[str, Any]) -> str:
    content = step["content"]
    kind = step["kind"]
    if kind == "model":
        calls = content.get("tool_calls") or []
        if calls:
            named = [c.get("function", c) for c in calls]
            return "model -> " + ", ".join(f"{c.get('name')}({str(c.get('arguments'))[:200]})" for c in named)
        return f"model: {content.get('content')}"
    if kind == "tool":
        result = str(content.get("content", ""))
        return f"tool {content.get('name')}: {result[:300]}"
    if kind == "human":
        if "answer" in content:
            return f"human answered: {content['answer']}"
        return f"asks a human: {content.get('question', content)}"
    if kind == "final":
        return f"final answer: {content.get('answer', content)}"
    return f"{kind}: {json.dumps(content, default=str)[:300]}"


def follow_run(client: Client, run_id: str, auto_answer: str | None = None) -> int:
    """Print a run's steps as they happen; when it waits for a human, ask at the terminal."""
    print(f"run {run_id}")
    after = -1
    while True:
        status = None
        for seen in client.runs.events(run_id, after):
            event, data = seen.event, plain(seen.data)
            if event == "step":
                after = max(after, data["index"])
                print(f"  [{data['index']}] {_describe(data)}", flush=True)
            elif event == "status":
                status = data["status"]
                if status == "waiting_human":
                    break
            elif event == "end":
                status = data["status"]
        if status == "waiting_human":
            for request in client.humans.list("pending"):
                if request.run_id != run_id:
                    continue
                print(f"\nthe agent asks: {request.question}")
                if auto_answer is not None:
                    answer = auto_answer
                    print(f"> {answer}")
                elif sys.stdin.isatty():
                    answer = input("> ")
                else:
                    print(f'answer with: toolserver human answer {request.id} "..."')
                    return 2
                client.humans.answer(request.id, answer)
            continue
        run = client.runs.get(run_id)
        print(f"\n{run.status}: {run.result if run.status == 'succeeded' else run.error}")
        return 0 if run.status == "succeeded" else 1


_DEMO_CODE = """import statistics
data = [3, 1, 4, 1, 5, 9, 2, 6]
with open("report.txt", "w") as fh:
    fh.write(f"mean={statistics.mean(data)} median={statistics.median(data)}")
"""


def _demo(args: argparse.Namespace) -> int:
    client = Client()
    replies = [
        {
            "content": "I will write a small analysis script.",
            "tool_calls": [
                {
                    "name": "write_file",
                    "arguments": {"path": "analyze.py", "content": _DEMO_CODE},
                }
            ],
        },
        {
            "tool_calls": [
                {"name": "shell", "arguments": {"command": "python analyze.py && ls -l report.txt"}}
            ]
        },
        {"tool_calls": [{"name": "read_file", "arguments": {"path": "report.txt"}}]},
        {
            "tool_calls": [
                {
                    "name": "ask_human",
                    "arguments": {
                        "question": "The report is ready (mean 3.875, median 3.5). Shall I keep it?",
                        "context": "report.txt in the session workspace",
                    },
                }
            ]
        },
        "Done: analyze.py computed the statistics, report.txt holds them, and the human approved keeping it.",
    ]
    client.agents.define(
        name="demo",
        system_prompt="You analyse data in your sandbox and check with a human before finishing.",
        tools=["shell", "python", "read_file", "write_file"],
        llm={"provider": "scripted", "replies": replies},
    )
    with client.session() as session:
        print(f"session {session.id}")
        code = follow_run(
            client,
            client.runs.start("demo", "Summarise the sample data.", session.id).id,
            "yes" if args.yes else None,
        )
        print(f"\nreport.txt: {session.files.read_text('report.txt')}")
        return code
