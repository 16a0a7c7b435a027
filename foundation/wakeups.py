"""Wake-ups for long-polls: an event per waiter, kept only while it waits (memory bounded by the waiters).

with wakeups.watch(run_id) as woken:      # register first, then read the state: no wake-up is lost
    if nothing_new():
        await wakeups.wait(woken, 15.0)
wakeups.notify(run_id)                    # from the writer: every current waiter of run_id wakes
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Iterator
from contextlib import contextmanager

__all__ = ["Wakeups"]


class Wakeups:
    """Keyed wake-ups; a key no one waits on holds nothing, however many keys are notified."""

    def __init__(self) -> None:
        self._waiting: dict[Hashable, set[asyncio.Event]] = {}

    @contextmanager
    def watch(self, key: Hashable) -> Iterator[asyncio.Event]:
        """An event set by the next `notify(key)`; registered until the block ends."""
        event = asyncio.Event()
        self._waiting.setdefault(key, set()).add(event)
        try:
            yield event
        finally:
            waiting = self._waiting.get(key)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self._waiting[key]

    @staticmethod
    async def wait(event: asyncio.Event, timeout_s: float) -> bool:
        """True if woken within `timeout_s`, False when the time ran out."""
        try:
            await asyncio.wait_for(event.wait(), timeout_s)
        except asyncio.TimeoutError:
            return False
        return True

    def notify(self, key: Hashable) -> None:
        for event in self._waiting.get(key, ()):
            event.set()

    def waiting(self) -> int:
        """How many waiters are registered (for tests and metrics)."""
        return sum(len(events) for events in self._waiting.values())
