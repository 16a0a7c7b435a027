"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from registry import Database, KeyStore
from sandbox.config import SandboxConfig
from sandbox.fake import FakeBackend
from sandbox.manager import SandboxManager
from toolserver.config import Settings
from toolserver.http.app import build_services, create_app
from toolserver.nodes.local import LocalNodes


@pytest.fixture
async def two_tenants(tmp_path: Path) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """The in-process app over fake sandboxes, with a client for each of team-a ("a") and team-b ("b")."""
    settings = Settings(home=tmp_path, pool_size=0)
    db = Database(settings.database)
    manager = SandboxManager(SandboxConfig(pool_size=0, node_id="n"), backend=FakeBackend("n"))
    services = build_services(settings, db, LocalNodes({"n": manager}))
    _, key_a = KeyStore(db).create("team-a", "a")
    _, key_b = KeyStore(db).create("team-b", "b")
    transport = httpx.ASGITransport(app=create_app(services))
    clients = {
        name: httpx.AsyncClient(
            transport=transport, base_url="http://t", headers={"Authorization": f"Bearer {key}"}, timeout=120
        )
        for name, key in (("a", key_a), ("b", key_b))
    }
    yield clients
    await services.environments.shutdown()
    for client in clients.values():
        await client.aclose()
    await manager.shutdown()
    db.close()
