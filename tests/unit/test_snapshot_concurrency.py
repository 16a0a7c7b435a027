"""Snapshots taken at once by one namespace stay within its total size cap.

The cap was checked after each archive was made, against the snapshots already recorded: archives made at
the same time all saw the same total, so every one of them was kept (and all were on the node's disk).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from foundation.errors import QuotaExceeded
from registry import Database, SessionStore
from registry.snapshots import SnapshotStore
from sandbox.base import Limits
from sandbox.config import SandboxConfig
from sandbox.manager import SandboxManager
from tests.unit.test_pause import TEAM, SnapshottingBackend
from toolserver.api.requests import SessionCreate
from toolserver.nodes.local import LocalNodes
from toolserver.service.sessions import SessionService


class SlowArchives(SnapshottingBackend):
    """Archiving takes a moment, as a real tar does: snapshots asked for at once overlap."""

    async def archive_sandbox(self, session_id: str, dest: str, cap_bytes: int) -> int:
        await asyncio.sleep(0.05)
        return await super().archive_sandbox(session_id, dest, cap_bytes)


async def test_snapshots_asked_for_at_once_keep_the_namespace_cap(tmp_path: Path) -> None:
    config = SandboxConfig(
        pool_size=0,
        allowed_images=("fake",),
        paused_dir=str(tmp_path / "paused"),
        runtime_dir=str(tmp_path / "rt"),
        snapshots_dir=str(tmp_path / "snapshots"),
    )
    manager = SandboxManager(config, backend=SlowArchives(node_id="local"))
    db = Database(f"sqlite:///{tmp_path / 's.db'}")
    service = SessionService(
        SessionStore(db),
        LocalNodes({"local": manager}),
        Limits(),
        60.0,
        snapshots=SnapshotStore(db),
        max_snapshot_bytes=100,
    )
    session = (await service.create(TEAM, SessionCreate()))["id"]
    await service.write_file(TEAM, session, "f", b"x" * 60)
    made = await asyncio.gather(*(service.snapshot(TEAM, session) for _ in range(6)), return_exceptions=True)
    assert sum(1 for m in made if isinstance(m, QuotaExceeded)) == 5
    assert len(await service.list_snapshots(TEAM)) == 1
    assert len(os.listdir(tmp_path / "snapshots")) == 1
    for m in made:
        if isinstance(m, BaseException) and not isinstance(m, QuotaExceeded):
            pytest.fail(f"unexpected {m!r}")
