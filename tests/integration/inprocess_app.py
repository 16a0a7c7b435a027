"""The app over one in-process Docker sandbox manager, served by uvicorn on loopback (no Ray): real HTTP and
real sandboxes for tests that need a client to see the server's answer as it is sent, or to go away mid-answer."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from registry import Database, KeyStore
from sandbox import _labels
from sandbox.config import SandboxConfig
from sandbox.manager import SandboxManager
from tests.integration.serverproc import free_port
from toolserver.config import Settings
from toolserver.http.app import build_services, create_app
from toolserver.nodes.local import LocalNodes

__all__ = ["Served", "served_app"]


@dataclass
class Served:
    """Where the app answers, a tenant's key, and one session of that tenant."""

    url: str
    key: str
    session: str


@contextlib.contextmanager
def served_app(home: Path, docker_engine: Any, sandbox_image: str, **settings: Any) -> Iterator[Served]:
    """The app on a free loopback port, with `settings` over the defaults; its containers go afterwards."""
    config = SandboxConfig(
        image=sandbox_image, instance_id=f"inproc-{secrets.token_hex(4)}", node_id="node-p", pool_size=0
    )
    manager = SandboxManager(config)
    db = Database(Settings(home=home).database)
    app_settings = Settings(home=home, pool_size=0, sandbox_image=sandbox_image, **settings)
    _, key = KeyStore(db).create("inproc", "p")
    app = create_app(build_services(app_settings, db, LocalNodes({"node-p": manager})))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
        made = httpx.post(
            url + "/v1/sessions", json={}, headers={"Authorization": f"Bearer {key}"}, timeout=120
        )
        assert made.status_code == 201, made.text
        yield Served(url, key, made.json()["id"])
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        asyncio.run(manager.shutdown())
        db.close()
        for container in docker_engine.containers.list(
            all=True, filters=_labels.instance_filter(config.instance_id)
        ):
            container.remove(force=True)
