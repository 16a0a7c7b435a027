"""Keeps the registry in step when a node manager pauses or resumes a session (idle pause, auto-resume)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from registry import Database, SessionStore

__all__ = ["pause_state_callback"]


def pause_state_callback(
    database_url: str,
) -> Callable[[str, str, dict[str, Any]], Coroutine[Any, Any, None]]:
    """A `SandboxManager.pause_listener` that records `paused`/`running` and what was kept (registry opened on first use)."""
    opened: list[SessionStore] = []

    def record(session_id: str, status: str, what: dict[str, Any]) -> None:
        if not opened:
            opened.append(SessionStore(Database(database_url)))
        opened[0].set_pause_state(session_id, status, pause_fields(status, what))  # type: ignore[arg-type]

    async def on_change(session_id: str, status: str, what: dict[str, Any]) -> None:
        await asyncio.to_thread(record, session_id, status, what)

    return on_change


def pause_fields(status: str, what: dict[str, Any]) -> dict[str, Any]:
    """What a session record's `pause` column takes from a node's pause or resume answer."""
    if status == "paused":
        return {"paused_at": what.get("paused_at"), "kept": what.get("kept"), "resumed": None}
    return {"paused_at": None, "resumed": what.get("resumed")}
