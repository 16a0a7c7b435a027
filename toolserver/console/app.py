"""The console as one gradio app: a key box on top, then one tab per page."""

from __future__ import annotations

from typing import Any

import gradio as gr

from toolserver.console import chat_room, runs, sessions, waiting
from toolserver.console.connection import Connection, error_message
from toolserver.console.render import STYLE

__all__ = ["STYLE", "build_app"]

_INTRO = """\
# toolserver console
Server **{url}**. {key_note}
"""


def _key_note(conn: Connection) -> str:
    if conn.default_key:
        return "The console's key is in use; enter another tenant's key to act as that tenant in this tab."
    return "Enter your API key to begin (it stays in this tab only)."


def build_app(conn: Connection) -> gr.Blocks:
    """The console's pages over `conn`; each browser tab has its own key (the console's by default)."""
    with gr.Blocks(title="toolserver console", analytics_enabled=False) as app:
        key = gr.State("")
        with gr.Row(equal_height=True):
            gr.Markdown(_INTRO.format(url=conn.url, key_note=_key_note(conn)))
            key_box = gr.Textbox(
                label="API key", type="password", placeholder="tsk_...", scale=1, elem_id="key-box"
            )
            use_key = gr.Button("Use this key", scale=0, elem_id="key-use")
        key_status = gr.Markdown(elem_id="key-status")

        def check(entered: str) -> tuple[Any, str]:
            entered = entered.strip()
            if not entered:
                return "", "Using the console's key." if conn.default_key else "No key yet."
            try:
                conn.client(entered).sessions()
            except Exception as exc:
                return gr.skip(), f"**That key does not work:** {error_message(exc, conn.url)}"
            return entered, "Key accepted: this tab now sees what that key may see."

        use_key.click(check, [key_box], [key, key_status])
        key_box.submit(check, [key_box], [key, key_status])
        with gr.Tabs():
            with gr.Tab("Waiting for you", id="waiting"):
                waiting.build(app, conn, key)
            with gr.Tab("Runs", id="runs"):
                runs.build(app, conn, key)
            with gr.Tab("Chat room", id="chat"):
                chat_room.build(app, conn, key)
            with gr.Tab("Sessions", id="sessions"):
                sessions.build(app, conn, key)
    return app
