"""What E2B adds to a session: its template, metadata and environment, kept in the sandbox's workspace.

The file lives with the sandbox (so every replica and a restarted server find it, and it goes when the
sandbox goes); a replica keeps what it read in a small cache.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from foundation.errors import ToolServerError
from sandbox.errors import WorkspaceFileNotFound
from toolserver.service.principal import Principal

__all__ = ["RECORD_FILE", "E2BRecord", "E2BRecords"]

RECORD_FILE = ".e2b-sandbox.json"
_CACHE_MAX = 4096


@dataclass(frozen=True)
class E2BRecord:
    """The template a sandbox was created from, its metadata, and the environment of its commands and code."""

    template: str = "base"
    metadata: dict[str, str] = field(default_factory=dict)
    envs: dict[str, str] = field(default_factory=dict)


class E2BRecords:
    """Reads and writes each sandbox's E2B record through the session service (tenant-checked)."""

    def __init__(self, sessions: Any) -> None:
        self.sessions = sessions
        self._cache: dict[tuple[str, str], E2BRecord] = {}

    async def save(self, who: Principal, session_id: str, record: E2BRecord) -> None:
        data = json.dumps(asdict(record)).encode()
        await self.sessions.write_file(who, session_id, RECORD_FILE, data)
        self._remember(who, session_id, record)

    async def get(self, who: Principal, session_id: str) -> E2BRecord:
        """The sandbox's record; an empty one for a session made by the native API (or a lost file)."""
        hit = self._cache.get((who.namespace, session_id))
        if hit is not None:
            return hit
        try:
            raw = json.loads(await self.sessions.read_file(who, session_id, RECORD_FILE))
            record = E2BRecord(
                template=str(raw.get("template", "base")),
                metadata={str(k): str(v) for k, v in dict(raw.get("metadata") or {}).items()},
                envs={str(k): str(v) for k, v in dict(raw.get("envs") or {}).items()},
            )
        except WorkspaceFileNotFound:
            record = E2BRecord()
        except ToolServerError:
            raise  # the session itself: not found, lost, unavailable
        except (ValueError, TypeError, AttributeError):
            record = E2BRecord()  # the sandbox's code overwrote the file
        self._remember(who, session_id, record)
        return record

    def forget(self, who: Principal, session_id: str) -> None:
        self._cache.pop((who.namespace, session_id), None)

    def _remember(self, who: Principal, session_id: str, record: E2BRecord) -> None:
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[(who.namespace, session_id)] = record
