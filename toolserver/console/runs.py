"""The "Runs" page: start a run of an agent, watch its steps stream in, answer its question in place."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import gradio as gr

from toolserver import api
from toolserver.client import Client
from toolserver.console.connection import Connection, guarded
from toolserver.console.render import steps_html

__all__ = ["build"]

_ENDED = ("succeeded", "failed")  # a stream stops here, and at an open question: no thread waits on a human
_EXAMPLE_AGENT = {
    "name": "helper",
    "tools": ["python", "ask_human"],
    "llm": {"provider": "scripted", "replies": ["Hello from a scripted model."]},
}


def _run_choice(run: api.Run) -> tuple[str, str]:
    task = run.task if len(run.task) <= 50 else run.task[:47] + "..."
    return f"{run.agent}: {task} ({run.status}) [{run.id}]", run.id


def _question(client: Client, run_id: str) -> tuple[str | None, str]:
    """The pending request of a waiting run, and the text that shows it."""
    for request in client.humans.list("pending"):
        if request.run_id == run_id:
            return request.id, f"**The agent asks:** {request.question}"
    return None, ""


class _Watch:
    """Follows one run: its steps so far, then its events until it pauses or ends."""

    def __init__(self, client: Client, run_id: str) -> None:
        self.client = client
        self.run = client.runs.get(run_id)
        self.steps = list(self.run.steps or [])
        self.status = self.run.status
        self.request_id: str | None = None

    def view(self) -> tuple[Any, ...]:
        self.request_id, question = (
            _question(self.client, self.run.id) if self.status == "waiting_human" else (None, "")
        )
        header = f"**Run** `{self.run.id}` of **{self.run.agent}** on: {self.run.task}"
        if self.status in _ENDED:
            final = self.client.runs.get(self.run.id)
            outcome = final.result if self.status == "succeeded" else final.error
            header += f"\n\n**{self.status}**: {json.dumps(outcome, default=str)[:2000]}"
        return (
            header,
            steps_html(self.steps, self.status),
            self.run.id,
            self.request_id,
            gr.update(value=question, visible=bool(self.request_id)),
            gr.update(visible=bool(self.request_id)),
        )

    @property
    def paused(self) -> bool:
        """Ended, or waiting on a question still open (an answered one means the run is resuming)."""
        return self.status in _ENDED or (self.status == "waiting_human" and self.request_id is not None)

    def follow(self) -> Iterator[tuple[Any, ...]]:
        yield self.view()
        if self.paused:
            return
        after = max((s.index for s in self.steps), default=-1)
        for event in self.client.runs.events(self.run.id, after=after):
            if event.step is not None:
                self.steps.append(event.step)
            elif event.status is not None:
                self.status = event.status
            yield self.view()
            if self.paused:
                return


def build(app: gr.Blocks, conn: Connection, key: gr.State) -> None:
    """The page's components and events, inside the current tab."""
    with gr.Row():
        agent = gr.Dropdown(label="Agent", choices=[], allow_custom_value=True, scale=1, elem_id="runs-agent")
        task = gr.Textbox(label="Task", scale=3, elem_id="runs-task")
        start = gr.Button("Start run", variant="primary", scale=0, elem_id="runs-start")
    with gr.Row():
        picked = gr.Dropdown(
            label="Or open a run", choices=[], allow_custom_value=True, scale=3, elem_id="runs-pick"
        )
        reload = gr.Button("Refresh lists", scale=0)
    with gr.Accordion("Define an agent (JSON, the body of POST /v1/agents)", open=False):
        spec = gr.Code(json.dumps(_EXAMPLE_AGENT, indent=2), language="json", elem_id="runs-agent-spec")
        define = gr.Button("Define agent")
    header = gr.Markdown(elem_id="runs-header")
    steps = gr.HTML(elem_id="runs-steps")
    run_id = gr.State(None)
    request_id = gr.State(None)
    question = gr.Markdown(visible=False, elem_id="runs-question")
    with gr.Row(visible=False) as answer_row:
        answer = gr.Textbox(label="Your answer", scale=4, elem_id="runs-answer")
        send = gr.Button("Answer", variant="primary", scale=0, elem_id="runs-send")
    view = [header, steps, run_id, request_id, question, answer_row]

    def lists(tab_key: str) -> tuple[Any, Any]:
        if not conn.has_key(tab_key):
            return gr.skip(), gr.skip()
        client = conn.client(tab_key)
        agents = [a.name for a in client.agents.list()]
        runs = sorted(client.runs.list(), key=lambda r: r.created_at, reverse=True)[:50]
        return gr.update(choices=agents), gr.update(choices=[_run_choice(r) for r in runs])

    def start_run(tab_key: str, agent_name: str | None, text: str) -> Iterator[tuple[Any, ...]]:
        if not agent_name or not text.strip():
            raise gr.Error("choose an agent and write a task")
        client = conn.client(tab_key)
        started = client.runs.start(agent_name, text)
        yield from _Watch(client, started.id).follow()

    def open_run(tab_key: str, chosen: str | None) -> Iterator[tuple[Any, ...]]:
        if chosen:
            yield from _Watch(conn.client(tab_key), chosen).follow()

    def reply(tab_key: str, current: str | None, request: str | None, text: str) -> Iterator[tuple[Any, ...]]:
        if not current or not request:
            raise gr.Error("this run is not waiting for an answer")
        if not text.strip():
            raise gr.Error("write an answer first")
        client = conn.client(tab_key)
        client.humans.answer(request, text)
        yield from _Watch(client, current).follow()

    def define_agent(tab_key: str, body: str) -> Any:
        try:
            fields = json.loads(body)
        except ValueError as exc:
            raise gr.Error(f"not JSON: {exc}") from None
        if not isinstance(fields, dict) or "name" not in fields or "llm" not in fields:
            raise gr.Error("an agent needs at least a name and an llm")
        defined = conn.client(tab_key).agents.define(fields.pop("name"), fields.pop("llm"), **fields)
        gr.Info(f"Agent {defined.name} defined.")
        return gr.update(value=defined.name)

    listed = guarded(conn.url, lists)
    for trigger in (app.load, key.change, reload.click):
        trigger(listed, [key], [agent, picked])
    start.click(guarded(conn.url, start_run), [key, agent, task], view).then(listed, [key], [agent, picked])
    picked.input(guarded(conn.url, open_run), [key, picked], view)
    send.click(guarded(conn.url, reply), [key, run_id, request_id, answer], view).then(
        lambda: "", None, [answer]
    )
    define.click(guarded(conn.url, define_agent), [key, spec], [agent]).then(listed, [key], [agent, picked])
