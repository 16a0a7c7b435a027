"""Denied egress in the call audit: a sandbox's refused connections, written where tenants read their audit."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

from registry import AuditStore, Database
from sandbox.base import SandboxInfo
from sandbox.egress.gate import DeniedCallback
from sandbox.egress.journal import Attempt

__all__ = ["AUDIT_TOOL", "egress_audit_callback"]

AUDIT_TOOL = "sandbox.egress"
PER_MINUTE = 20  # audit rows per session and minute; more denials are still counted by the proxy

log = logging.getLogger(__name__)


def egress_audit_callback(database: str) -> DeniedCallback:
    """A callback for the node's egress proxies: one audit row per denial, at most PER_MINUTE per session."""
    audit = AuditStore(Database(database))
    budget: dict[str, tuple[int, int]] = defaultdict(lambda: (0, 0))  # session -> (minute, rows written)
    pending: set[asyncio.Future[None]] = set()

    def write(info: SandboxInfo, attempt: Attempt) -> None:
        try:
            audit.record(
                info.owner,
                AUDIT_TOOL,
                "denied",
                session_id=info.session_id,
                error_type="egress_denied",
                request_bytes=0,
            )
        except Exception:
            log.exception("could not audit a denied egress of session %s", info.session_id)

    def on_denied(info: SandboxInfo, attempt: Attempt) -> None:
        minute = int(time.time() // 60)
        if len(budget) > 1024:  # sessions of past minutes: their budget is spent anyway
            for session_id in [s for s, (m, _) in budget.items() if m != minute]:
                del budget[session_id]
        seen_minute, rows = budget[info.session_id]
        rows = rows if seen_minute == minute else 0
        if rows >= PER_MINUTE:
            return
        budget[info.session_id] = (minute, rows + 1)
        future = asyncio.get_running_loop().run_in_executor(None, write, info, attempt)
        pending.add(future)
        future.add_done_callback(pending.discard)

    return on_denied
