"""Shared fixtures: the Docker engine and the sandbox image for integration tests."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("RAY_DEDUP_LOGS", "0")


def docker_client():
    """A connected Docker client, or a skip when no engine answers (unit runs on laptops)."""
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:
        if os.environ.get("CI"):
            raise RuntimeError(f"CI needs a running Docker engine: {exc}") from exc
        pytest.skip(f"no Docker engine: {exc}")
    return client


@pytest.fixture(scope="session")
def docker_engine():
    return docker_client()


@pytest.fixture(scope="session")
def sandbox_image(docker_engine) -> str:
    """The sandbox image, built (or found up to date) once per test session.

    TOOLSERVER_TEST_SANDBOX_IMAGE names another tag, so that trying a changed guest daemon leaves the default
    image (which other test runs on the machine use) alone.
    """
    from sandbox.config import DEFAULT_IMAGE
    from sandbox.image import build_image

    tag = os.environ.get("TOOLSERVER_TEST_SANDBOX_IMAGE") or DEFAULT_IMAGE
    build_image(tag, progress=lambda line: None, client=docker_engine)
    return tag


def _runtimes_under_test() -> list[str]:
    listed = os.environ.get("TOOLSERVER_TEST_RUNTIMES", "runc,runsc")
    return [name.strip() for name in listed.split(",") if name.strip()]


@pytest.fixture(scope="session", params=_runtimes_under_test())
def sandbox_runtime(request: pytest.FixtureRequest, docker_engine) -> str:
    """Each container runtime the sandbox suites run under (TOOLSERVER_TEST_RUNTIMES, default runc,runsc).

    A runtime the engine lacks is a skip on a laptop and a failure in CI (scripts/setup.sh registers runsc).
    """
    runtime = str(request.param)
    offered = docker_engine.info().get("Runtimes") or {}
    if runtime not in offered:
        message = f"the Docker engine has no runtime {runtime!r} (it has {', '.join(offered)}): run scripts/setup.sh"
        if os.environ.get("CI"):
            raise RuntimeError(message)
        pytest.skip(message)
    return runtime


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A registry database URL: a SQLite file here; PostgreSQL modules override it."""
    return f"sqlite:///{tmp_path / 'state' / 'registry.db'}"


@pytest.fixture
def open_db(db_url: str) -> Iterator[Callable[..., Any]]:
    """Open `Database(db_url, ...)` as often as a test likes; all are closed afterwards."""
    from registry import Database

    opened: list[Database] = []

    def open_(**options: Any) -> Database:
        db = Database(db_url, **options)
        opened.append(db)
        return db

    yield open_
    for db in opened:
        db.close()


@pytest.fixture
def db(open_db: Callable[..., Any]) -> Any:
    return open_db()
