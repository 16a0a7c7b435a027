"""Pausing sessions for tenants: pause, resume, auto-resume, and the namespace's caps on both."""

from __future__ import annotations

import asyncio
from typing import Any

from foundation.errors import QuotaExceeded
from registry import SessionStore
from toolserver.nodes.base import NodeDirectory
from toolserver.nodes.session_pause import pause_fields
from toolserver.service.principal import Principal

__all__ = ["SessionPauses", "kept_bytes"]


def kept_bytes(kept: Any) -> int:
    """What one pause keeps on its node: the files' archive and the memory checkpoint."""
    if not isinstance(kept, dict):
        return 0
    return int(kept.get("archive_bytes") or 0) + int(kept.get("memory_bytes") or 0)


class SessionPauses:
    """Mixed into `SessionService`, which gives the store, the nodes, its caps and its record checks."""

    store: SessionStore
    nodes: NodeDirectory
    max_per_namespace: int
    max_paused_per_namespace: int = 0
    max_paused_bytes: int = 0

    async def _record(self, principal: Principal, session_id: str) -> Any:
        raise NotImplementedError

    def _forget(self, principal: Principal, session_id: str) -> None:
        raise NotImplementedError

    def _view(self, record: Any) -> dict[str, Any]:
        raise NotImplementedError

    def _pause_turn(self, namespace: str) -> asyncio.Lock:
        """One pause or resume of a namespace at a time here: each checks its cap against the ones before it."""
        turns: dict[str, asyncio.Lock] = self.__dict__.setdefault("_pause_turns", {})
        return turns.setdefault(namespace, asyncio.Lock())

    async def pause(self, principal: Principal, session_id: str) -> dict[str, Any]:
        """Pause the caller's session: its container goes, its files (and memory under runsc) stay."""
        async with self._pause_turn(principal.namespace):
            return await self._pause(principal, session_id)

    async def _pause(self, principal: Principal, session_id: str) -> dict[str, Any]:
        record = await self._record(principal, session_id)
        if record.status == "paused":
            return self._view(record)
        if self.max_paused_per_namespace and (
            await self._count(principal.namespace, "paused") >= self.max_paused_per_namespace
        ):
            raise QuotaExceeded(
                f"the namespace has {self.max_paused_per_namespace} paused sessions, its cap"
                " (TOOLSERVER_MAX_PAUSED_SESSIONS_PER_NAMESPACE); resume or delete one first",
                limit=self.max_paused_per_namespace,
                setting="TOOLSERVER_MAX_PAUSED_SESSIONS_PER_NAMESPACE",
            )
        node = await self.nodes.node(record.node_id)
        answer = await node.pause(session_id)
        if self.max_paused_bytes:
            held = await self._paused_bytes(principal.namespace, but=session_id)
            if held + kept_bytes(answer.get("kept")) > self.max_paused_bytes:
                await node.resume(session_id)  # undone: the session runs on as it was
                raise QuotaExceeded(
                    f"the namespace's paused sessions would keep over {self.max_paused_bytes >> 20} MiB, its cap"
                    " (TOOLSERVER_MAX_PAUSED_MB_PER_NAMESPACE); resume or delete paused sessions first",
                    limit=self.max_paused_bytes,
                    setting="TOOLSERVER_MAX_PAUSED_MB_PER_NAMESPACE",
                )
        return await self._recorded(principal, session_id, "paused", answer)

    async def _paused_bytes(self, namespace: str, but: str) -> int:
        records = await asyncio.to_thread(self.store.list, namespace)
        return sum(
            kept_bytes((r.pause or {}).get("kept")) for r in records if r.status == "paused" and r.id != but
        )

    async def resume(self, principal: Principal, session_id: str) -> dict[str, Any]:
        """Resume the caller's paused session (a running one answers as it is)."""
        record = await self._record(principal, session_id)
        if record.status != "paused":
            return self._view(record)
        return await self._resume(principal, record)

    async def _resume(self, principal: Principal, record: Any) -> dict[str, Any]:
        """Resume a paused record within the namespace's cap of running sessions; the new view."""
        async with self._pause_turn(principal.namespace):
            record = await asyncio.to_thread(self.store.get, principal.namespace, record.id)
            if record.status != "paused":  # another call resumed it meanwhile
                return self._view(record)
            return await self._resume_now(principal, record)

    async def _resume_now(self, principal: Principal, record: Any) -> dict[str, Any]:
        if (
            self.max_per_namespace
            and await self._count(principal.namespace, "running") >= self.max_per_namespace
        ):
            raise QuotaExceeded(
                f"the namespace has {self.max_per_namespace} running sessions, its cap"
                " (TOOLSERVER_MAX_SESSIONS_PER_NAMESPACE); pause or delete one before resuming this one",
                limit=self.max_per_namespace,
                setting="TOOLSERVER_MAX_SESSIONS_PER_NAMESPACE",
            )
        node = await self.nodes.node(record.node_id)
        answer = await node.resume(record.id)
        if answer.get("resumed") is None:  # its node had resumed it already (a call raced this one)
            updated = await asyncio.to_thread(
                self.store.update_status, principal.namespace, record.id, "running"
            )
            self._forget(principal, record.id)
            return self._view(updated)
        return await self._recorded(principal, record.id, "running", answer)

    async def _resumed_if_paused(self, principal: Principal, record: Any) -> Any:
        """Auto-resume: the record of a session that a call found paused, once it runs again."""
        if record.status != "paused":
            return record
        await self._resume(principal, record)
        return await asyncio.to_thread(self.store.get, principal.namespace, record.id)

    async def _recorded(
        self, principal: Principal, session_id: str, status: str, answer: dict[str, Any]
    ) -> Any:
        updated = await asyncio.to_thread(
            self.store.set_pause_state,
            session_id,
            status,  # type: ignore[arg-type]
            pause_fields(status, answer),
        )
        self._forget(principal, session_id)
        if updated is None:  # deleted meanwhile
            return self._view(await self._record(principal, session_id))
        return self._view(updated)

    async def _count(self, namespace: str, status: str) -> int:
        records = await asyncio.to_thread(self.store.list, namespace)
        return sum(1 for r in records if r.status == status)
