"""The console: a gradio app for the people in the loop, over the public API with the user's key.

Pages: Waiting for you (agents' questions, live), Runs (start, watch, answer), Chat room (a multi-agent
environment, as a participant) and Sessions (shell, Python, files). It needs the `ui` extra
(`pip install 'toolserver[ui]'`); `toolserver ui` starts it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from toolserver.console.connection import Connection

if TYPE_CHECKING:
    import gradio as gr

__all__ = ["Connection", "build_app"]


def build_app(conn: Connection) -> gr.Blocks:
    """The console's gradio app over `conn` (imports gradio, which the `ui` extra installs)."""
    from toolserver.console.app import build_app as build

    return build(conn)
