"""Keeps the registry in step when a node manager expires an idle session."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from registry import LIVE_SESSION_STATUSES, Database
from registry.models import SessionRecord
from toolserver.config import Settings

__all__ = ["mark_expired_callback"]


def mark_expired_callback(settings: Settings) -> Callable[[str], Coroutine[Any, Any, None]]:
    """A callback for SandboxManager(on_expired=...) that marks the session `expired`."""
    db = Database(settings.database)

    def mark(session_id: str) -> None:
        with db.session() as session:
            record = session.get(SessionRecord, session_id)
            if record is not None and record.status in LIVE_SESSION_STATUSES:  # pause: a paused one ends too
                record.status = "expired"
                session.add(record)

    async def on_expired(session_id: str) -> None:
        await asyncio.to_thread(mark, session_id)

    return on_expired
