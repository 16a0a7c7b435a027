"""The HTTP app over a fake sandbox backend, served by uvicorn on loopback in a thread: for the SDK's tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from registry import Database, KeyStore
from sandbox.base import ShellResult
from sandbox.config import SandboxConfig
from sandbox.fake import FakeBackend, FakeSandbox
from sandbox.manager import SandboxManager
from toolserver.config import Settings
from toolserver.http.app import build_services, create_app
from toolserver.nodes.local import LocalNodes


@dataclass(frozen=True)
class SdkServer:
    """Where the server listens and the keys it knows."""

    url: str
    admin_key: str
    keys: dict[str, str]


def _shell(command: str) -> ShellResult:
    return ShellResult(
        exit_code=0, output=f"ran: {command}", timed_out=False, truncated=False, cwd="/workspace"
    )


@contextmanager
def sdk_server(home: Path) -> Iterator[SdkServer]:
    """Start the server; yield where it is; stop it."""
    settings = Settings(home=home, pool_size=0, max_sessions_per_namespace=5)
    db = Database(settings.database)
    backend = FakeBackend("node-a", sandbox_factory=lambda info: FakeSandbox(info, shell=_shell))
    manager = SandboxManager(SandboxConfig(pool_size=0, node_id="node-a"), backend=backend)
    services = build_services(settings, db, LocalNodes({"node-a": manager}))
    _, admin = KeyStore(db).create("ops", "admin", admin=True)
    keys = {name: KeyStore(db).create(f"team-{name}", name)[1] for name in ("a", "b")}
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(services), log_level="error", access_log=False, timeout_graceful_shutdown=1)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield SdkServer(f"http://127.0.0.1:{port}", admin, keys)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        db.close()
