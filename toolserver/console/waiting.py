"""The "Waiting for you" page: the namespace's pending questions, live, with an answer box that resumes the run."""

from __future__ import annotations

from typing import Any

import gradio as gr

from toolserver import api
from toolserver.client import ApiError, Client
from toolserver.console.connection import Connection, error_message, guarded
from toolserver.console.render import request_html

__all__ = ["build"]

REFRESH_S = 2.0
_SHOWN = 20  # questions shown at once; the oldest first


def _choice(request: api.HumanRequest) -> tuple[str, str]:
    question = request.question if len(request.question) <= 70 else request.question[:67] + "..."
    return f"{question}  [{request.id}]", request.id


def _context(client: Client, request: api.HumanRequest) -> tuple[str | None, list[api.Step]]:
    """The asking agent and the run's steps; a run that went away leaves the question without context."""
    if not request.run_id:
        return None, []
    try:
        run = client.runs.get(request.run_id)
    except ApiError:
        return None, []
    return run.agent, list(run.steps or [])


def _cards(client: Client, pending: list[api.HumanRequest]) -> str:
    if not pending:
        return '<div class="ts-muted" data-empty="1">New questions appear here as they are asked.</div>'
    cards = [request_html(r, *_context(client, r)) for r in pending[:_SHOWN]]
    more = len(pending) - _SHOWN
    if more > 0:
        cards.append(f'<div class="ts-muted">... and {more} more</div>')
    return "".join(cards)


def build(app: gr.Blocks, conn: Connection, key: gr.State) -> None:
    """The page's components and events, inside the current tab."""
    gr.Markdown(
        "Questions your agents asked a human (`ask_human`). They appear here as they are asked; "
        "answer one and its run resumes."
    )
    status = gr.Markdown("loading ...", elem_id="waiting-status")
    cards = gr.HTML(elem_id="waiting-cards")
    seen = gr.State(None)  # the pending ids last shown: a tick with the same ids changes nothing
    with gr.Row():
        question = gr.Dropdown(
            label="Question", choices=[], allow_custom_value=True, scale=2, elem_id="waiting-question"
        )
        answer = gr.Textbox(label="Your answer", scale=3, elem_id="waiting-answer")
        send = gr.Button("Answer", variant="primary", scale=0, elem_id="waiting-send")
    timer = gr.Timer(REFRESH_S)

    def refresh(tab_key: str, shown: list[str] | None, chosen: str | None) -> tuple[Any, ...]:
        try:
            client = conn.client(tab_key)
            pending = sorted(client.humans.list("pending"), key=lambda r: r.created_at)
        except Exception as exc:  # a tick never raises: the page says what is wrong and tries again
            return (
                f"**Cannot list the questions:** {error_message(exc, conn.url)}",
                gr.skip(),
                shown,
                gr.skip(),
            )
        ids = [r.id for r in pending]
        count = f"**{len(ids)} waiting for you**" if ids else "**Nobody is waiting for you.**"
        if ids == shown:
            return count, gr.skip(), shown, gr.skip()
        new = [r for r in pending if shown is not None and r.id not in shown]
        for request in new[:3]:
            gr.Info(f"New question: {request.question[:120]}")
        keep = chosen if chosen in ids else (ids[0] if ids else None)
        dropdown = gr.update(choices=[_choice(r) for r in pending], value=keep)
        return count, _cards(client, pending), ids, dropdown

    def reply(tab_key: str, request_id: str | None, text: str) -> tuple[Any, ...]:
        if not request_id:
            raise gr.Error("choose the question to answer")
        if not text.strip():
            raise gr.Error("write an answer first")
        answered = conn.client(tab_key).humans.answer(request_id, text)
        gr.Info(f"Answered; run {answered.run_id or ''} resumes.")
        return "", None  # clears the box; the next tick drops the question from the list

    outputs = [status, cards, seen, question]
    timer.tick(refresh, [key, seen, question], outputs, show_progress="hidden")
    for trigger in (app.load, key.change):
        trigger(lambda tab_key, chosen: refresh(tab_key, None, chosen), [key, question], outputs)
    send.click(guarded(conn.url, reply), [key, question, answer], [answer, seen]).then(
        refresh, [key, seen, question], outputs
    )
