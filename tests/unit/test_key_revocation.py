"""A revoked key is refused by every replica once DELETE /v1/keys/{id} has answered: two app instances (two
replicas) on one registry database, the second holding the key in its cache when the first revokes it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from registry import Database, KeyStore
from registry.keys import KEY_TRUST_S
from sandbox.config import SandboxConfig
from sandbox.fake import FakeBackend
from sandbox.manager import SandboxManager
from toolserver.config import Settings
from toolserver.http.app import build_services, create_app
from toolserver.http.auth import Authenticator
from toolserver.nodes.local import LocalNodes


@pytest.fixture
async def replicas(tmp_path: Path) -> AsyncIterator[list[httpx.AsyncClient]]:
    """Two replicas of one server: each its own services, database connections and key cache."""
    settings = Settings(home=tmp_path, pool_size=0)
    opened = []
    clients = []
    for name in ("r1", "r2"):
        db = Database(settings.database)
        manager = SandboxManager(SandboxConfig(pool_size=0, node_id=name), backend=FakeBackend(name))
        app = create_app(build_services(settings, db, LocalNodes({name: manager})))
        clients.append(httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}"))
        opened.append((db, manager))
    yield clients
    for client in clients:
        await client.aclose()
    for db, manager in opened:
        await manager.shutdown()
        db.close()


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_after_delete_answers_no_replica_accepts_the_key(
    tmp_path: Path, replicas: list[httpx.AsyncClient]
) -> None:
    first, second = replicas
    db = Database(Settings(home=tmp_path).database)
    try:
        _, admin = KeyStore(db).create("ops", "admin", admin=True)
        victim, secret = KeyStore(db).create("team-a", "leaked")
        _, other = KeyStore(db).create("team-b", "b")
    finally:
        db.close()
    assert (await second.get("/v1/tools", headers=_auth(secret))).status_code == 200  # now in r2's cache
    assert (await first.get("/v1/tools", headers=_auth(secret))).status_code == 200

    # While r1 revokes, r2 keeps being asked with the key (and by another tenant).
    statuses: list[tuple[float, int]] = []
    others: list[tuple[float, int]] = []
    stop = asyncio.Event()

    async def hammer() -> None:
        while not stop.is_set():
            sent = time.monotonic()
            statuses.append((sent, (await second.get("/v1/tools", headers=_auth(secret))).status_code))
            started = time.monotonic()
            code = (await second.get("/v1/tools", headers=_auth(other))).status_code
            others.append((time.monotonic() - started, code))
            await asyncio.sleep(0.01)

    task = asyncio.create_task(hammer())
    started = time.monotonic()
    deleted = await first.delete(f"/v1/keys/{victim.id}", headers=_auth(admin))
    answered = time.monotonic()
    await asyncio.sleep(0.3)
    stop.set()
    await task

    assert deleted.status_code == 204, deleted.text
    assert answered - started >= KEY_TRUST_S  # the revoke waited out every replica's cache
    after = [code for sent, code in statuses if sent >= answered]
    assert after and set(after) == {401}, statuses
    refused = await second.get("/v1/tools", headers=_auth(secret))
    assert refused.status_code == 401 and refused.json()["error"]["type"] == "unauthorized"
    assert (await first.get("/v1/tools", headers=_auth(secret))).status_code == 401
    assert others and {code for _, code in others} == {200} and max(t for t, _ in others) < 10


def test_a_cache_longer_than_the_stores_trust_is_refused(tmp_path: Path) -> None:
    db = Database(Settings(home=tmp_path).database)
    try:
        keys = KeyStore(db)
        assert Authenticator(keys).cache_s == keys.trust_s == KEY_TRUST_S
        with pytest.raises(ValueError, match="trust_s"):
            Authenticator(keys, cache_s=5.0)
        record, _ = keys.create("team-a")
        started = time.monotonic()
        keys.revoke(record.id)
        assert time.monotonic() - started >= KEY_TRUST_S
        fast = KeyStore(db, trust_s=0)
        started = time.monotonic()
        fast.revoke(keys.create("team-a")[0].id)
        assert time.monotonic() - started < KEY_TRUST_S
    finally:
        db.close()
