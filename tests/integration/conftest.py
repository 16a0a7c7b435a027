"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration import pg


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL server on loopback for one test module (or TOOLSERVER_TEST_POSTGRES_URL)."""
    with pg.postgres_server() as url:
        yield url
