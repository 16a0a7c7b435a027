"""What a replica remembers between calls of a session, so a data call costs no registry round trip.

`VerifiedSessions`: the (namespace, session) -> record a registry read verified, kept `ttl_s` and at most
`max_entries` (oldest out first). Ownership and node never change for a session; a session that ended is
caught by its node (no such sandbox), after which the caller reads the registry again.

`UseRecorder`: `last_used_at` / `expires_at` are written in the background, at most every `every_s` per session,
instead of a registry write on every call. Expiry itself is the node manager's (its in-memory last use), so
the registry's view of last use lags by at most `every_s`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

__all__ = ["UseRecorder", "VerifiedSessions"]

log = logging.getLogger(__name__)

Key = tuple[str, str]


class VerifiedSessions:
    """A bounded, short-lived memory of session records that a registry read verified."""

    def __init__(self, ttl_s: float = 5.0, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[Key, tuple[float, Any]] = OrderedDict()

    def get(self, namespace: str, session_id: str) -> Any | None:
        """The remembered record, or None when there is none or it is older than `ttl_s`."""
        key = (namespace, session_id)
        entry = self._entries.get(key)
        if entry is None:
            return None
        if time.monotonic() - entry[0] > self.ttl_s:
            del self._entries[key]
            return None
        return entry[1]

    def put(self, namespace: str, session_id: str, record: Any) -> None:
        """Remember a record just read from the registry."""
        key = (namespace, session_id)
        self._entries[key] = (time.monotonic(), record)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def forget(self, namespace: str, session_id: str) -> None:
        """Drop a session (it was deleted, lost or its node failed it)."""
        self._entries.pop((namespace, session_id), None)

    def __len__(self) -> int:
        return len(self._entries)


class UseRecorder:
    """Records sessions' last use in the registry off the request path, at most every `every_s` per session."""

    def __init__(
        self, write: Callable[[str, str], Any], every_s: float = 5.0, max_entries: int = 10_000
    ) -> None:
        self._write = write
        self.every_s = every_s
        self.max_entries = max_entries
        self._written: OrderedDict[Key, float] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()

    def used(self, namespace: str, session_id: str) -> None:
        """Note a use now; starts a background write when the last one is `every_s` old."""
        key = (namespace, session_id)
        now = time.monotonic()
        last = self._written.get(key)
        if last is not None and now - last < self.every_s:
            return
        self._written[key] = now
        self._written.move_to_end(key)
        while len(self._written) > self.max_entries:
            self._written.popitem(last=False)
        task = asyncio.get_running_loop().create_task(self._record(namespace, session_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def forget(self, namespace: str, session_id: str) -> None:
        """Stop tracking a session that ended."""
        self._written.pop((namespace, session_id), None)

    async def drain(self) -> None:
        """Wait for the writes under way (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _record(self, namespace: str, session_id: str) -> None:
        try:
            await asyncio.to_thread(self._write, namespace, session_id)
        except Exception as exc:  # a session deleted meanwhile, a busy database: the next use writes again
            self._written.pop((namespace, session_id), None)
            log.debug("could not record the use of %s: %s", session_id, exc)
