"""Shared fixtures: the Docker engine and the sandbox image for integration tests."""

from __future__ import annotations

import os

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
    """The sandbox image, built (or found up to date) once per test session."""
    from sandbox.config import DEFAULT_IMAGE
    from sandbox.image import build_image

    build_image(DEFAULT_IMAGE, progress=lambda line: None, client=docker_engine)
    return DEFAULT_IMAGE
